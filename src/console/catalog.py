"""The organization's plans, billable metrics, coupons and add-ons, listed as the API
returns them (creating them stays the API's job)."""

from __future__ import annotations

from aiohttp import web

from console.pages import PREFIX, Handler, api, show, signed_in
from console.sessions import Viewer
from store import code_keyed
from store.add_ons import ADD_ONS
from store.billable_metrics import BILLABLE_METRICS
from store.code_keyed import CodeKeyed
from store.coupons import COUPONS
from store.plans import PLANS

LIST_ROWS = 100


def _listing(section: str, spec: CodeKeyed) -> Handler:
    """The page `{section}.html`: the organization's latest LIST_ROWS objects of `spec`, as
    the API's list answers them, and how many there are."""

    @signed_in
    async def page(request: web.Request, viewer: Viewer) -> web.Response:
        async with api(request).db.acquire() as conn:
            bodies, total = await code_keyed.page(spec, conn, viewer.organization.id, LIST_ROWS, 0)
        values = {section: bodies}
        return show(request, viewer, f"{section}.html", section=section, total=total, **values)

    return page


def _catalog_routes() -> web.RouteTableDef:
    table = web.RouteTableDef()
    for section, spec in (
        ("plans", PLANS),
        ("metrics", BILLABLE_METRICS),
        ("coupons", COUPONS),
        ("add_ons", ADD_ONS),
    ):
        table.get(f"{PREFIX}/{section}")(_listing(section, spec))
    return table


ROUTES = _catalog_routes()
