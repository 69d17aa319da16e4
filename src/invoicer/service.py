"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

import asyncio

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.metrics_http import serve_until_signal
from meterflow.settings import Settings


async def serve(settings: Settings, config: InvoicerSettings) -> None:
    invoicer = Invoicer(settings, config)
    await serve_until_signal(invoicer, config.metrics_host, config.metrics_port, "invoicer")


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, InvoicerSettings.from_env()))
    return 0
