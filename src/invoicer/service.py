"""`meterflow invoicer`: consume periods-closed until SIGTERM or SIGINT, then finish the
batch in flight, commit its offsets, and close the consumer, the producer and the pool.
Prometheus metrics are served on their own port."""

from __future__ import annotations

import gc
from functools import partial

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.metrics_http import run_until_signal
from meterflow.settings import Settings

# Allocations between young collections (CPython's default: 700).
YOUNG_COLLECTION_EVERY = 50_000


def tune_gc() -> None:
    """A round of 1,000 invoices allocates some hundred thousand short-lived objects (the
    messages, terms, fees and rows), which refcounting frees; the default thresholds ran a
    young collection every 700 of them. Collect less often, and leave what startup built
    (modules, the clients) out of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 20)


def main(settings: Settings) -> int:
    config = InvoicerSettings.from_env()
    tune_gc()
    make = partial(Invoicer, settings, config)  # built inside the service's event loop
    return run_until_signal(make, config.metrics_host, config.metrics_port, "invoicer")
