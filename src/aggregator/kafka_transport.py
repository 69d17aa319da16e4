"""The aggregator's Kafka transport: faust-streaming's aiokafka driver, with the consumer's
fetch wait taken from the settings and each fetched record handed to the streams without
four tasks of its own, nor a decode step (`RawRecords`), nor Faust's statistics per record
(`QuietMonitor`).

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

import types
from collections.abc import Coroutine, Generator
from typing import Any

import aiokafka
import faust
from faust.sensors.monitor import Monitor
from faust.serializers.schemas import Schema
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import AppT, EventT, Message
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


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
        async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
            """Faust's fetcher delivers every record with `wait_first(deliver(record),
            suspend_flow.wait())`, which costs four tasks and an `asyncio.wait` a record
            (about a tenth of the worker's time, issue 15). The delivery is started here at
            once instead: when it finishes without waiting (room in the stream's queue, the
            usual case), that is the answer; when it waits, the rest of it runs as a task
            raced against the others as before. Only while the flow runs: a suspended or
            stopping consumer takes Faust's own path."""
            if timeout is not None:
                return await super().wait_first(*coros, timeout=timeout)
            first = coros[0] if coros else None
            if (
                len(coros) != 2
                or type(first) is not types.CoroutineType  # (an ABC's isinstance is slow)
                or self.suspend_flow.is_set()
                or self.should_stop
            ):
                return await super().wait_first(*coros)
            try:
                step = first.send(None)
            except StopIteration as done:
                _close(coros[1])
                return WaitResults([first], [done.value], False)
            except BaseException:
                _close(coros[1])
                raise
            return await super().wait_first(_finish(first, step), coros[1])

        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            made: AIOKafkaConsumerThread = thread(self, loop=self.loop, beacon=self.beacon)
            return made

    class _Transport(Transport):
        Consumer = _Consumer

    app.transport = _Transport(app.conf.broker_consumer, app)


class RawRecords(Schema[bytes, bytes]):
    """The events topic's schema: keys and values are raw bytes both ways, and a fetched
    record becomes a stream event at once. Faust's own `Schema.compile` decodes every
    record's key and value through its codec registry (identity for raw bytes, about 3% of
    the worker's time, issue 15); the aggregator reads `event.message.key` and `.value`
    itself."""

    def __init__(self) -> None:
        super().__init__(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def compile(self, app: AppT, **_: Any) -> Any:
        create_event = app.create_event

        async def decode(message: Message, **_: Any) -> EventT[bytes]:
            return create_event(message.key, message.value, message.headers, message)

        return decode


class QuietMonitor(Monitor):
    """Faust's Monitor sensor without its bookkeeping per record and per stream event (Faust
    adds its main sensor to every app; about 2% of the worker's time, issue 15). Its
    statistics are read by nothing here: the worker's metrics are its own
    (`aggregator.metrics`). The other hooks (commits, sends, rebalances) are Faust's."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, Any], step: Any) -> Generator[Any, Any, Any]:
    """The rest of a coroutine that was started by hand and yielded `step` (the future it
    waits on): yielded on to the task running this, which wakes the coroutine as its own
    task would have."""
    while True:
        try:
            sent = yield step
        except BaseException as exc:  # cancellation included: the coroutine sees it
            try:
                step = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                step = coro.send(sent)
            except StopIteration as done:
                return done.value


async def _finish(coro: Coroutine[Any, Any, Any], step: Any) -> Any:
    """`_resumed` as a coroutine object (what `wait_first` takes for an awaitable)."""
    return await _resumed(coro, step)


def _close(waitable: WaitArgT) -> None:
    """Drop a coroutine that was never awaited (no "never awaited" warning)."""
    if isinstance(waitable, Coroutine):
        waitable.close()


def fetch_max_wait_ms(app: faust.App) -> int | None:
    """The started worker consumer's fetch wait, as its fetcher uses it (None before)."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    wait = getattr(fetcher, "_fetch_max_wait_ms", None)
    return None if wait is None else int(wait)
