"""`meterflow ingest`: run the API and its metrics until SIGTERM or SIGINT, then stop
accepting connections, finish the requests in flight, flush the producer and close the pool.

With METERFLOW_INGEST_WORKERS > 1 (`auto`, the default, is one per core) the command runs
that many such processes sharing the API port (SO_REUSEPORT: the kernel spreads the
connections), each with its own producer, pool and outbox loop (`meterflow.workers`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import uvloop
from aiohttp import web

from gateway.app import create_app, create_metrics_app
from meterflow import workers
from meterflow.collector import collect_less_often
from meterflow.settings import Settings
from web.settings import IngestSettings

log = logging.getLogger(__name__)

GC_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server  # aiohttp exposes the bound socket only here
    port: int = server.sockets[0].getsockname()[1]
    return port


class IngestServer:
    """The API app and its metrics app, each on its own TCP site (port 0: any free port);
    the metrics listen on `metrics_host`, by default where the API does."""

    def __init__(
        self, settings: Settings, ingest: IngestSettings, *, metrics_host: str | None = None
    ):
        self.ingest = ingest
        self._metrics_host = ingest.host if metrics_host is None else metrics_host
        self.app = create_app(settings, ingest)
        self._api = web.AppRunner(self.app, access_log=None, shutdown_timeout=ingest.shutdown_grace)
        self._metrics = web.AppRunner(create_metrics_app(self.app), access_log=None)
        self.port = 0
        self.metrics_port = 0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.ingest.host in ("0.0.0.0", "") else self.ingest.host
        return f"http://{host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        host = "127.0.0.1" if self._metrics_host in ("0.0.0.0", "") else self._metrics_host
        return f"http://{host}:{self.metrics_port}/metrics"

    async def start(self) -> None:
        await self._api.setup()
        await self._metrics.setup()
        api_site = web.TCPSite(
            self._api, self.ingest.host, self.ingest.port, reuse_port=self.ingest.workers > 1
        )
        await api_site.start()
        metrics_site = web.TCPSite(self._metrics, self._metrics_host, self.ingest.metrics_port)
        await metrics_site.start()
        self.port, self.metrics_port = _bound_port(api_site), _bound_port(metrics_site)
        log.info("ingest.listening url=%s metrics=%s", self.url, self.metrics_url)

    async def stop(self) -> None:
        """Close the listeners, wait for in-flight requests, then the app's cleanup runs."""
        await self._api.cleanup()
        await self._metrics.cleanup()

    async def __aenter__(self) -> IngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


Started = Callable[[IngestServer], None]


async def serve(
    settings: Settings,
    ingest: IngestSettings,
    *,
    metrics_host: str | None = None,
    started: Started | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; `started` is told once both sites listen."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = IngestServer(settings, ingest, metrics_host=metrics_host)
    await server.start()
    collect_less_often(GC_THRESHOLD)
    if started is not None:
        started(server)
    try:
        await stop.wait()
        log.info("ingest.stopping reason=signal")
    finally:
        await server.stop()


def run(
    settings: Settings,
    ingest: IngestSettings,
    *,
    metrics_host: str | None = None,
    started: Started | None = None,
) -> None:
    """serve() on uvloop's event loop: libuv's sockets and loop cost the ingest hot path
    (HTTP in, Kafka out, a few thousand writes a second) less than asyncio's own."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, ingest, metrics_host=metrics_host, started=started))


def main(settings: Settings) -> int:
    ingest = IngestSettings.from_env()
    if ingest.workers == 1:
        run(settings, ingest)
        return 0

    def work(index: int, report: Callable[[int], None]) -> None:
        alone = replace(ingest, metrics_port=0)  # its own, on 127.0.0.1: the pool's merges
        run(settings, alone, metrics_host="127.0.0.1", started=lambda s: report(s.metrics_port))

    pool = workers.Pool(
        service="ingest",
        count=ingest.workers,
        metrics_host=ingest.host,
        metrics_port=ingest.metrics_port,
        metric_prefix="ingest_worker",
        stop_timeout=ingest.shutdown_grace + ingest.produce_timeout + 5,
    )
    return workers.supervise(pool, work)
