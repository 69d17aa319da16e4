"""The aggregator's Kafka transport: faust-streaming's aiokafka driver, with the consumer's
fetch wait taken from the settings.

faust-streaming 0.15.3 creates its worker consumer with a fixed `fetch_max_wait_ms=1500`
(`faust/transport/drivers/aiokafka.py`) and offers no setting for it. It matters for
freshness: aiokafka does not fetch a partition whose records are still buffered, so data
arriving there waits until the fetch in flight for the other partitions returns, which an
idle partition makes last the whole wait. The transport is installed through Faust's public
`app.transport` setter; the consumer thread's factory method is extended, not copied, and
the value is handed to the aiokafka consumer before it starts (aiokafka 0.14 builds its
fetcher from it in `start()`; `tests/integration/aggregator` checks the started fetcher).
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport


class _ConsumerThread(AIOKafkaConsumerThread):
    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def install(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Make `app` consume through a transport whose fetch waits at most `fetch_max_wait_ms`."""
    thread = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms})

    class _Consumer(Consumer):
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            made: AIOKafkaConsumerThread = thread(self, loop=self.loop, beacon=self.beacon)
            return made

    class _Transport(Transport):
        Consumer = _Consumer

    app.transport = _Transport(app.conf.broker_consumer, app)


def fetch_max_wait_ms(app: faust.App) -> int | None:
    """The started worker consumer's fetch wait, as its fetcher uses it (None before)."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    wait = getattr(fetcher, "_fetch_max_wait_ms", None)
    return None if wait is None else int(wait)
