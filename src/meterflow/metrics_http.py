"""A service's Prometheus `/metrics`, served by aiohttp on a port of its own."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class _Metrics(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class Worker(Protocol):
    """A service loop: `start`, `run` until `stop` is set, `close` (also after a failed start)."""

    @property
    def stop(self) -> asyncio.Event: ...

    @property
    def metrics(self) -> _Metrics: ...

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


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


async def serve_until_signal(worker: Worker, host: str, port: int, service: str) -> None:
    """Run `worker` with its metrics on host:port until SIGTERM or SIGINT sets its `stop`,
    then close it and the metrics server (logged `<service>.stopping reason=signal`)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop.set)
    runner = await start_metrics(worker.metrics.registry, host, port, service)
    try:
        await worker.start()
        await worker.run()
        log.info("%s.stopping reason=signal", service)
    finally:
        await worker.close()
        await runner.cleanup()


def run_until_signal(make: Callable[[], Worker], host: str, port: int, service: str) -> int:
    """`meterflow <service>`: the worker `make` builds, served until a signal (exit code 0)."""

    async def serve() -> None:
        await serve_until_signal(make(), host, port, service)

    asyncio.run(serve())
    return 0
