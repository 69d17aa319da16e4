"""The composition root: `create_app` wires the pool, the broker, the catalog publisher and
the metrics into the aiohttp application, opened in startup and closed in cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console import routes as console_routes
from console.settings import ConsoleSettings
from ingest import (
    add_ons,
    billable_metrics,
    coupons,
    credit_notes,
    current_usage,
    customers,
    event_debugger,
    events,
    invoice_actions,
    invoice_preview,
    invoices,
    one_off_invoices,
    organizations,
    plans,
    repository,
    subscriptions,
    taxes,
    wallets,
)
from ingest.auth import authenticate
from ingest.broker import Broker
from ingest.catalog_publisher import CatalogPublisher
from ingest.context import CONTEXT, ORGANIZATION, IngestContext
from ingest.errors import (
    ApiError,
    BadRequest,
    DatabaseUnavailable,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ValidationFailed,
    internal_error,
)
from ingest.key_cache import KeyCache
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from meterflow.settings import Settings
from webhooks import endpoints as webhook_endpoints

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


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open the pool and the producer at startup; at cleanup stop the outbox loop, flush
    the producer and close the pool (aiohttp has finished in-flight requests by then)."""
    ctx = app[CONTEXT]
    ctx.pool = await repository.create_pool(
        ctx.settings.dsn, schema=ctx.settings.db_schema, size=ctx.ingest.db_pool_size
    )
    ctx.publisher = CatalogPublisher(ctx.pool, ctx.broker, ctx.settings.topics.catalog, ctx.metrics)
    ctx.client = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=ctx.ingest.usage_timeout)
    )
    await ctx.broker.start()
    outbox = asyncio.create_task(ctx.publisher.run(ctx.ingest.outbox_interval))
    log.info(
        "ingest.started topics_prefix=%s schema=%s",
        ctx.settings.topics.prefix,
        ctx.settings.db_schema,
    )
    yield
    outbox.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await outbox
    await ctx.publisher.drain_quietly()
    await ctx.broker.close()
    await ctx.client.close()
    await ctx.pool.close()
    log.info("ingest.stopped")


def create_app(settings: Settings, ingest: IngestSettings) -> web.Application:
    """The API application; its metrics are served by `create_metrics_app(app)`."""
    metrics = IngestMetrics()
    broker = Broker(settings.bootstrap_servers, timeout=ingest.produce_timeout, metrics=metrics)
    app = web.Application(
        middlewares=[measured, lago_errors, api_key], client_max_size=ingest.max_body_bytes
    )
    app[CONTEXT] = IngestContext(
        settings=settings,
        ingest=ingest,
        metrics=metrics,
        broker=broker,
        keys=KeyCache(ingest.key_cache_seconds),
    )
    app.cleanup_ctx.append(_resources)
    for module in (
        events,
        customers,
        billable_metrics,
        plans,
        subscriptions,
        invoices,
        current_usage,
        taxes,
        coupons,
        wallets,
        organizations,
        webhook_endpoints,
        add_ons,
        one_off_invoices,
        invoice_actions,
        credit_notes,
        event_debugger,
        invoice_preview,
    ):
        app.add_routes(module.routes())
    console_routes.install(app, ConsoleSettings.from_env())
    return app


def create_metrics_app(api: web.Application) -> web.Application:
    """Prometheus `/metrics` for one API app, meant for its own port (no API key)."""
    registry = api[CONTEXT].metrics.registry

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
