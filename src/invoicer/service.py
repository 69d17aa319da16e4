"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from invoicer.consumer import Invoicer
from invoicer.metrics import InvoicerMetrics
from invoicer.settings import InvoicerSettings
from meterflow.settings import Settings

log = logging.getLogger(__name__)


def metrics_app(metrics: InvoicerMetrics) -> web.Application:
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app


async def serve(settings: Settings, config: InvoicerSettings) -> None:
    invoicer = Invoicer(settings, config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, invoicer.stop.set)
    runner = web.AppRunner(metrics_app(invoicer.metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.metrics_host, config.metrics_port)
    await site.start()
    server: Any = site._server  # aiohttp exposes the bound socket only here
    log.info("invoicer.metrics port=%d", server.sockets[0].getsockname()[1])
    try:
        await invoicer.start()
        await invoicer.run()
        log.info("invoicer.stopping reason=signal")
    finally:
        await invoicer.close()
        await runner.cleanup()


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, InvoicerSettings.from_env()))
    return 0
