"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

from functools import partial

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.collector import collect_less_often
from meterflow.metrics_http import run_until_signal
from meterflow.settings import Settings

# Allocations between young collections (CPython's default: 700): a round of 1,000 invoices
# allocates some hundred thousand short-lived objects.
YOUNG_COLLECTION_EVERY = 50_000


def main(settings: Settings) -> int:
    config = InvoicerSettings.from_env()
    collect_less_often(YOUNG_COLLECTION_EVERY)
    make = partial(Invoicer, settings, config)  # built inside the service's event loop
    return run_until_signal(make, config.metrics_host, config.metrics_port, "invoicer")
