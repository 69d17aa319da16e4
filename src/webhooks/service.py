"""`meterflow webhooks`: deliver queued webhooks until SIGTERM or SIGINT, then let the
requests in flight finish (their outcome recorded) and close. Metrics on their own port."""

from __future__ import annotations

import asyncio

from meterflow.metrics_http import serve_until_signal
from meterflow.settings import Settings
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker


async def serve(settings: Settings, config: WebhookSettings) -> None:
    worker = WebhookWorker(settings, config)
    await serve_until_signal(worker, config.metrics_host, config.metrics_port, "webhooks")


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, WebhookSettings.from_env()))
    return 0
