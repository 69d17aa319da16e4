"""The middlewares every HTTP app runs: Lago's error shape for every failure, request
latency by route, and the API key on `/api/` paths."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from web.auth import authenticate
from web.context import CONTEXT, ORGANIZATION
from web.errors import (
    ApiError,
    BadRequest,
    DatabaseUnavailable,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ValidationFailed,
    internal_error,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNIQUE_FIELDS = {
    "customers_external_id": "external_id",
    "billable_metrics_code": "code",
    "plans_code": "code",
    "subscriptions_external_id": "external_id",
}


@web.middleware
async def lago_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves in Lago's error shape; an unexpected one is logged, never shown."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return PayloadTooLarge().response()
    except web.HTTPNotFound:
        return RouteNotFound().response()
    except web.HTTPMethodNotAllowed:
        return MethodNotAllowed().response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return BadRequest(code=exc.reason.lower().replace(" ", "_")).response()
    except asyncpg.UniqueViolationError as exc:
        # Names are claimed before they are checked, so this is a last line of defence.
        field = _UNIQUE_FIELDS.get(exc.constraint_name or "", "id")
        return ValidationFailed({field: ["value_already_exist"]}).response()
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("db.unavailable method=%s path=%s error=%r", request.method, request.path, exc)
        return DatabaseUnavailable().response()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("http.unhandled method=%s path=%s", request.method, request.path)
        return internal_error()


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[CONTEXT].metrics.request_latency.labels(
            request.method, route, str(status)
        ).observe(time.perf_counter() - started)


@web.middleware
async def api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        request[ORGANIZATION] = await authenticate(request)
    return await handler(request)
