"""`meterflow webhooks`: deliver queued webhooks until SIGTERM or SIGINT, then let the
requests in flight finish (their outcome recorded) and close. Metrics on their own port."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meterflow.settings import Settings
from webhooks.metrics import WebhookMetrics
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker

log = logging.getLogger(__name__)


def metrics_app(metrics: WebhookMetrics) -> web.Application:
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app


async def serve(settings: Settings, config: WebhookSettings) -> None:
    worker = WebhookWorker(settings, config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop.set)
    await worker.start()
    runner = web.AppRunner(metrics_app(worker.metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.metrics_host, config.metrics_port)
    await site.start()
    server: Any = site._server  # aiohttp exposes the bound socket only here
    log.info("webhooks.metrics port=%d", server.sockets[0].getsockname()[1])
    try:
        await worker.run()
        log.info("webhooks.stopping reason=signal")
    finally:
        await worker.close()
        await runner.cleanup()


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, WebhookSettings.from_env()))
    return 0
