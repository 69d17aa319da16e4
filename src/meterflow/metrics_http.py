"""A service's Prometheus `/metrics`, served by aiohttp on a port of its own."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app


async def start_metrics(
    registry: CollectorRegistry, host: str, port: int, service: str
) -> web.AppRunner:
    """Serve `registry` on host:port (0: any free port, logged as `<service>.metrics`);
    `await runner.cleanup()` stops it."""
    runner = web.AppRunner(metrics_app(registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # aiohttp exposes the bound socket only here
    log.info("%s.metrics port=%d", service, server.sockets[0].getsockname()[1])
    return runner
