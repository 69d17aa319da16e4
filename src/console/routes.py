"""The console's route table, and `install`, which adds it to the HTTP application with the
console's state (its settings, and the end of open usage streams at shutdown)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from console import actions, catalog, customer_tabs, customers, revenue, sign_in, usage
from console.pages import CONSOLE, PREFIX, ConsoleState, redirect
from console.settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"


ROUTES = web.RouteTableDef()


@ROUTES.get(f"{PREFIX}/")
@ROUTES.get(PREFIX)
async def home(request: web.Request) -> web.StreamResponse:
    raise redirect(f"{PREFIX}/customers")


ROUTES.static(f"{PREFIX}/static", STATIC, append_version=False)


def routes() -> list[web.AbstractRouteDef]:
    """The console's own routes, then each page module's table."""
    table: list[web.AbstractRouteDef] = [*ROUTES]
    for module in (sign_in, customers, actions, usage, customer_tabs, catalog, revenue):
        table.extend(module.ROUTES)
    return table


def install(app: web.Application, settings: ConsoleSettings) -> None:
    app[CONSOLE] = ConsoleState(settings)

    async def end_streams(app: web.Application) -> None:
        app[CONSOLE].closing.set()

    app.on_shutdown.append(end_streams)
    app.add_routes(routes())
