"""`meterflow webhooks`: deliver queued webhooks until SIGTERM or SIGINT, then let the
requests in flight finish (their outcome recorded) and close. Metrics on their own port."""

from __future__ import annotations

from functools import partial

from meterflow.metrics_http import run_until_signal
from meterflow.settings import Settings
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker


def main(settings: Settings) -> int:
    config = WebhookSettings.from_env()
    make = partial(WebhookWorker, settings, config)  # built inside the service's event loop
    return run_until_signal(make, config.metrics_host, config.metrics_port, "webhooks")
