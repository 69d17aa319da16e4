"""`meterflow ingest`: run the API and its metrics until SIGTERM or SIGINT, then stop
accepting connections, finish the requests in flight, flush the producer and close the pool."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from ingest.app import create_app, create_metrics_app
from ingest.settings import IngestSettings
from meterflow.settings import Settings

log = logging.getLogger(__name__)


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server  # aiohttp exposes the bound socket only here
    port: int = server.sockets[0].getsockname()[1]
    return port


class IngestServer:
    """The API app and its metrics app, each on its own TCP site (port 0: any free port)."""

    def __init__(self, settings: Settings, ingest: IngestSettings):
        self.ingest = ingest
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
        host = "127.0.0.1" if self.ingest.host in ("0.0.0.0", "") else self.ingest.host
        return f"http://{host}:{self.metrics_port}/metrics"

    async def start(self) -> None:
        await self._api.setup()
        await self._metrics.setup()
        api_site = web.TCPSite(self._api, self.ingest.host, self.ingest.port)
        await api_site.start()
        metrics_site = web.TCPSite(self._metrics, self.ingest.host, self.ingest.metrics_port)
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


async def serve(settings: Settings, ingest: IngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = IngestServer(settings, ingest)
    await server.start()
    try:
        await stop.wait()
        log.info("ingest.stopping reason=signal")
    finally:
        await server.stop()


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, IngestSettings.from_env()))
    return 0
