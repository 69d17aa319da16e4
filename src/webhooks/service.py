"""`meterflow webhooks`: deliver queued webhooks until SIGTERM or SIGINT, then let the
requests in flight finish (their outcome recorded) and close. Metrics on their own port."""

from __future__ import annotations

import asyncio
import logging
import signal

from meterflow.metrics_http import start_metrics
from meterflow.settings import Settings
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker

log = logging.getLogger(__name__)


async def serve(settings: Settings, config: WebhookSettings) -> None:
    worker = WebhookWorker(settings, config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop.set)
    await worker.start()
    runner = await start_metrics(
        worker.metrics.registry, config.metrics_host, config.metrics_port, "webhooks"
    )
    try:
        await worker.run()
        log.info("webhooks.stopping reason=signal")
    finally:
        await worker.close()
        await runner.cleanup()


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, WebhookSettings.from_env()))
    return 0
