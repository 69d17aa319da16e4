"""What every console page shares: the signed-in viewer, CSRF-checked forms, HTML error
pages, and rendering with the layout's values."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
from aiohttp import web
from multidict import MultiDictProxy

from console import sessions
from console.dates import Dates
from console.rendering import render
from console.sessions import Viewer
from console.settings import ConsoleSettings
from web.context import IngestContext, context
from web.errors import AggregatorUnavailable, ApiError, DatabaseUnavailable, NotFound

log = logging.getLogger(__name__)

PREFIX = "/console"
# One customer's pages (its view, tabs and actions) lie below this path.
CUSTOMER = f"{PREFIX}/customers/{{customer_id}}"
SESSION_COOKIE = "meterflow_session"
# The sign-in form's CSRF token before any session exists (double-submit: cookie and field).
SIGN_IN_COOKIE = "meterflow_sign_in"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class ConsoleState:
    """The console's settings, and the signal that ends open usage streams at shutdown."""

    settings: ConsoleSettings
    closing: asyncio.Event = field(default_factory=asyncio.Event)


CONSOLE = web.AppKey("console", ConsoleState)


class PageError(Exception):
    """A request the console answers with an error page (status, title, what to do)."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(title)
        self.status, self.title, self.message = status, title, message


def not_found(what: str = "page") -> PageError:
    return PageError(404, "Not found", f"This {what} does not exist in your organization.")


def state(request: web.Request) -> ConsoleState:
    return request.config_dict[CONSOLE]


def api(request: web.Request) -> IngestContext:
    """The API's context: the same pool, catalog publisher and HTTP client as its routes."""
    return context(request)


def parse_id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found(what) from None


def show(request: web.Request, viewer: Viewer | None, template: str, **values: Any) -> web.Response:
    """A page of the layout; `status` may be given among `values`."""
    status = values.pop("status", 200)
    values.setdefault("section", None)
    org_tz = viewer.organization.timezone if viewer else "UTC"
    return render(
        template,
        status=status,
        headers=SECURITY_HEADERS,
        viewer=viewer,
        prefix=PREFIX,
        dates=Dates(org_tz),
        path=request.path,
        **values,
    )


def error_page(request: web.Request, viewer: Viewer | None, exc: PageError) -> web.Response:
    return show(
        request, viewer, "error.html", status=exc.status, title=exc.title, message=exc.message
    )


Page = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signed_in(handler: Page) -> Handler:
    """Run `handler` for the session's user (else redirect to sign-in); failures become
    error pages: never a JSON body or a 500 with a trace."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(SESSION_COOKIE)
        viewer = None
        try:
            if token:
                async with api(request).db.acquire() as conn:
                    viewer = await sessions.viewer(conn, token)
            if viewer is None:
                target = request.path_qs if request.method == "GET" else f"{PREFIX}/customers"
                raise web.HTTPSeeOther(f"{PREFIX}/sign-in?next={quote(target)}")
            return await handler(request, viewer)
        except PageError as exc:
            return error_page(request, viewer, exc)
        except NotFound as exc:
            what = exc.code.removesuffix("_not_found").replace("_", " ")
            return error_page(request, viewer, not_found(what))
        except (AggregatorUnavailable, DatabaseUnavailable) as exc:
            return error_page(request, viewer, PageError(503, "Unavailable", _unavailable(exc)))
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("console.db_unavailable path=%s error=%r", request.path, exc)
            return error_page(request, viewer, PageError(503, "Unavailable", _unavailable(exc)))
        except ApiError as exc:
            log.warning("console.api_error path=%s code=%s", request.path, exc.code)
            return error_page(request, viewer, PageError(exc.status, exc.error, exc.code))

    return wrapped


def _unavailable(exc: Exception) -> str:
    if isinstance(exc, AggregatorUnavailable):
        return "The aggregator did not answer for this subscription yet: try again shortly."
    return "The database did not answer: nothing was changed, try again shortly."


async def form(request: web.Request, viewer: Viewer) -> MultiDictProxy[str | Any]:
    """The posted form, once its CSRF token is the session's."""
    data = await request.post()
    sent = data.get("csrf_token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, viewer.csrf_token):
        log.warning("console.csrf_refused path=%s user_id=%s", request.path, viewer.user_id)
        raise PageError(
            403,
            "Form refused",
            "This form was not sent from a page of your session (its CSRF token is missing or "
            "stale): reload the page and send it again.",
        )
    return data


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)
