"""The composition root: `create_app` builds the aiohttp application from the route tables of
the event intake and the resources, and wires the pool, the broker, the catalog publisher and
the metrics into it, opened in startup and closed in cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from console import routes as console_routes
from console.settings import ConsoleSettings
from gateway.api_logging import api_logged, purge_loop
from ingest import routes as ingest_routes
from ingest.broker import Broker
from meterflow.aggregator_usage import UsageClient
from meterflow.metrics_http import metrics_app
from meterflow.settings import Settings
from resources import routes as resource_routes
from store import database
from store.catalog_publisher import CatalogPublisher
from web.context import CONTEXT, IngestContext
from web.key_cache import KeyCache
from web.metrics import IngestMetrics
from web.middleware import api_key, lago_errors, measured
from web.settings import IngestSettings
from webhooks import endpoints as webhook_endpoints

log = logging.getLogger(__name__)


def _resources(broker: Broker) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's cleanup context, for the broker it produces with."""

    async def opened(app: web.Application) -> AsyncIterator[None]:
        """Open the pool and the producer at startup; at cleanup stop the outbox loop, flush
        the producer and close the pool (aiohttp has finished in-flight requests by then)."""
        ctx = app[CONTEXT]
        pool = ctx.pool = await database.create_pool(
            ctx.settings.dsn, schema=ctx.settings.db_schema, size=ctx.ingest.db_pool_size
        )
        publisher = CatalogPublisher(pool, broker, ctx.settings.topics.catalog, ctx.metrics)
        ctx.publisher = publisher
        client = ctx.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ctx.ingest.usage_timeout)
        )
        await broker.start()
        outbox = asyncio.create_task(publisher.run(ctx.ingest.outbox_interval))
        purge = asyncio.create_task(purge_loop(pool, ctx.ingest.api_log_retention_days))
        log.info(
            "ingest.started topics_prefix=%s schema=%s",
            ctx.settings.topics.prefix,
            ctx.settings.db_schema,
        )
        yield
        for task in (outbox, purge):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await publisher.drain_quietly()
        await broker.close()
        await client.close()
        await pool.close()
        log.info("ingest.stopped")

    return opened


def create_app(settings: Settings, ingest: IngestSettings) -> web.Application:
    """The API application; its metrics are served by `create_metrics_app(app)`."""
    metrics = IngestMetrics()
    broker = Broker(
        settings.bootstrap_servers,
        timeout=ingest.produce_timeout,
        metrics=metrics,
        compression=ingest.kafka_compression,
    )
    app = web.Application(
        middlewares=[measured, api_logged, lago_errors, api_key],
        client_max_size=ingest.max_body_bytes,
    )
    app[CONTEXT] = IngestContext(
        settings=settings,
        ingest=ingest,
        metrics=metrics,
        broker=broker,
        usage=UsageClient(ingest.aggregator_urls),
        keys=KeyCache(ingest.key_cache_seconds),
    )
    app.cleanup_ctx.append(_resources(broker))
    for table in (ingest_routes.routes(), resource_routes.routes(), webhook_endpoints.ROUTES):
        app.add_routes(table)
    console_routes.install(app, ConsoleSettings.from_env())
    return app


def create_metrics_app(api: web.Application) -> web.Application:
    """Prometheus `/metrics` for one API app, meant for its own port (no API key)."""
    return metrics_app(api[CONTEXT].metrics.registry)
