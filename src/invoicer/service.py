"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

import asyncio
import logging
import signal

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.metrics_http import start_metrics
from meterflow.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, config: InvoicerSettings) -> None:
    invoicer = Invoicer(settings, config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, invoicer.stop.set)
    runner = await start_metrics(
        invoicer.metrics.registry, config.metrics_host, config.metrics_port, "invoicer"
    )
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
