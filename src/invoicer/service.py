"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

from functools import partial

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.metrics_http import run_until_signal
from meterflow.settings import Settings


def main(settings: Settings) -> int:
    config = InvoicerSettings.from_env()
    make = partial(Invoicer, settings, config)  # built inside the service's event loop
    return run_until_signal(make, config.metrics_host, config.metrics_port, "invoicer")
