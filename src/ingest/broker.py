"""The one Kafka producer of an ingest process: idempotent, acks from all replicas, and an
answer within a deadline so an HTTP client is never left waiting on an unreachable broker.

Records are not handed to aiokafka one by one (a future, a partitioner call and an
accumulator lookup each): `send_records`, `send_packed` and `send_events` group a request's
records by partition, computed as Kafka's default partitioner does
(`meterflow.event_records.partition_for`: murmur2, as the Java client and the aggregator's
routing), and append them to that partition's `PartitionLane`. A lane coalesces the records
of concurrent requests into one record batch, submitted with `AIOKafkaProducer.send_batch`
while the previous batch of the partition is acknowledged, and a request waits on one future
that its batches' acknowledgements resolve (`Broker._acknowledged`). Events travel as packs
(`meterflow.event_records`): a lane merges the events of concurrent requests into one pack
(`OpenPack`, up to `PACK_LIMIT` events a record) while the partition's last batch is on its
way, so that under load a record carries the events of several requests, not 25 of one: the
aggregator's cost per record (Faust's delivery, a decode call, a position) is paid once for
all of them. (A linger before writing the pack, as a producer's `linger_ms`, made records of
about 90 events rather than 50, but cost closed-loop clients a third of their rate: each
batch of a partition waited it.)

`send_batch` goes through the same accumulator and sender as `send`: the batch gets the
idempotent producer's id, epoch and sequence when it is drained, and a retriable failure
re-enqueues it with the same sequence, so retries add no duplicates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

from meterflow.event_records import (
    PACK_LIMIT,
    WireEvent,
    encode_events,
    partition_for,
)
from web.errors import BrokerUnavailable
from web.metrics import IngestMetrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]  # (a list: aiokafka's record builder takes no other)
Message = tuple[bytes, bytes]  # (key, value): an encoded event
Keyed = tuple[bytes, bytes, Headers]  # (key, value, headers)
Record = tuple[bytes | None, bytes, Headers]  # what a lane sends: a pack has neither
_Grouped = TypeVar("_Grouped", Message, Keyed)
Part = tuple[bytes, int]  # a lone event's bytes (1) or a pack's, and how many events it holds
_Item = TypeVar("_Item", Keyed, Part)

# One record batch per partition may grow to this size (aiokafka's default is 16 KiB, which
# split every request into several batches); it stays under the broker's default
# message.max.bytes (1 MiB + 12 bytes).
MAX_BATCH_BYTES = 512 * 1024
# A single record larger than this is refused before anything is queued (aiokafka's
# max_request_size default, which `send` checked per record).
MAX_RECORD_BYTES = 1024 * 1024
# While the broker does not acknowledge (the idempotent producer retries a batch until it
# does), a lane holds at most this many full batches behind the filling one; beyond that it
# refuses records at once (the request gets a 503) instead of growing without bound.
MAX_QUEUED_BATCHES = 4
_RECORD_OVERHEAD = 64  # a record's framing, at most (varints, attributes, headers count)
# A pack record's value at most (so that it fits a batch of its own).
MAX_PACK_BYTES = MAX_BATCH_BYTES - _RECORD_OVERHEAD


class OpenPack:
    """Events merged into one pack record that is not written yet: its parts (lone events, or
    packs' insides), and the future its requests wait on, resolved with the batch the record
    goes into (`PartitionLane.place_pack`)."""

    __slots__ = ("acked", "events", "parts", "size")

    def __init__(self, acked: asyncio.Future[None]) -> None:
        self.acked = acked
        self.parts: list[bytes] = []
        self.events = 0
        self.size = 1  # the value's bytes: brackets, and a comma between parts

    def takes(self, part: bytes, events: int) -> bool:
        return self.events + events <= PACK_LIMIT and self.size + len(part) + 1 <= MAX_PACK_BYTES

    def add(self, part: bytes, events: int) -> None:
        # A pack's inside: what is between its brackets (both encoders write no blanks).
        self.parts.append(part[1:-1] if events > 1 else part)
        self.events += events
        self.size += len(part) + 1

    def value(self) -> bytes:
        if self.events == 1:
            return self.parts[0]  # a single event stays an object, as `encode_pack` writes it
        return b"[" + b",".join(self.parts) + b"]"


class PartitionLane:
    """The records bound for one partition, in order: a batch is filling while the previous
    one is on its way, and each batch is submitted once the one before it was acknowledged
    (the sender keeps one produce request per partition in flight anyway).

    `add` returns the futures of the batches the records went into; each resolves when the
    broker acknowledged its batch, or fails with the batch's error. `add_events` does the
    same for events, merged into the lane's open pack, which becomes a record when it is
    full or when its batch is about to leave (`place_pack`).
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, partition: int):
        self._producer = producer
        self.topic = topic
        self.partition = partition
        self._filling: tuple[BatchBuilder, asyncio.Future[None]] | None = None
        self._queued: collections.deque[tuple[BatchBuilder, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._pump: asyncio.Task[None] | None = None
        self._open: OpenPack | None = None

    @property
    def full(self) -> bool:
        return len(self._queued) >= MAX_QUEUED_BATCHES

    def add_events(self, parts: Iterable[Part]) -> list[asyncio.Future[None]]:
        """Events (lone, or packs, with their counts) into the open pack, in order."""
        touched: list[asyncio.Future[None]] = []
        for part, events in parts:
            if self._open is not None and not self._open.takes(part, events):
                self.place_pack()
            if self._open is None:
                acked = asyncio.get_running_loop().create_future()
                acked.add_done_callback(_consume_exception)
                self._open = OpenPack(acked)
            self._open.add(part, events)
            if not touched or touched[-1] is not self._open.acked:
                touched.append(self._open.acked)
        self._start()
        return touched

    def place_pack(self) -> None:
        """The open pack as a record of the filling batch (or the next, when full); its
        requests' future follows that batch's."""
        pack, self._open = self._open, None
        if pack is None:
            return
        try:
            batch = self._append([(None, pack.value(), [])])[-1]
        except Exception as exc:  # its requests are answered with it (a 503: they resend)
            pack.acked.set_exception(exc)
        else:
            batch.add_done_callback(lambda done: _follow(pack.acked, done))

    def add(self, messages: Iterable[Record]) -> list[asyncio.Future[None]]:
        self.place_pack()  # (the order is the order of arrival)
        touched = self._append(messages)
        self._start()
        return touched

    def _start(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run())

    def _append(self, messages: Iterable[Record]) -> list[asyncio.Future[None]]:
        filling = self._filling or self._new_batch()
        touched = [filling[1]]
        for key, value, headers in messages:
            if filling[0].append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Full: queue it and start the next one.
                self._queued.append(filling)
                filling = self._new_batch()
                touched.append(filling[1])
                if (
                    filling[0].append(key=key, value=value, timestamp=None, headers=headers) is None
                ):  # aiokafka takes any first record; never drop one silently if that changes
                    raise MessageSizeTooLargeError(f"a record of {len(value)} bytes")
        self._filling = filling
        return touched

    def _new_batch(self) -> tuple[BatchBuilder, asyncio.Future[None]]:
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Mark a failure as retrieved even when every waiting request already timed out.
        acked.add_done_callback(_consume_exception)
        return self._producer.create_batch(), acked

    async def _run(self) -> None:
        while True:
            if not self._queued:
                self.place_pack()  # what merged while the last batch was on its way
            if self._queued:
                builder, acked = self._queued.popleft()
            elif self._filling is not None and self._filling[0].record_count():
                (builder, acked), self._filling = self._filling, None
            else:
                return
            builder.close()  # nothing more goes in, and a closed batch does not linger
            try:
                delivery = await self._producer.send_batch(
                    builder, self.topic, partition=self.partition
                )
                await delivery
            except Exception as exc:  # handed to every request whose records the batch holds
                if not acked.done():
                    acked.set_exception(exc)
            else:
                if not acked.done():
                    acked.set_result(None)

    async def wait_idle(self) -> None:
        if self._pump is not None:
            await asyncio.shield(self._pump)


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _grouped(items: Sequence[_Grouped], partitions: list[int]) -> dict[int, list[_Grouped]]:
    """The items (keyed first) by the partition of `partitions` their key hashes to."""
    grouped: dict[int, list[_Grouped]] = {}
    for item in items:
        partition = partitions[partition_for(item[0], len(partitions))]
        group = grouped.get(partition)
        if group is None:
            grouped[partition] = [item]
        else:
            group.append(item)
    return grouped


def _record_size(record: Record) -> int:
    key, value, headers = record
    return len(value) + (len(key) if key else 0) + sum(len(n) + len(v) for n, v in headers)


def _part_size(part: Part) -> int:
    return len(part[0])


def _follow(acked: asyncio.Future[None], batch: asyncio.Future[None]) -> None:
    if not acked.done():
        failure = _failure_of(batch)
        if failure is None:
            acked.set_result(None)
        else:
            acked.set_exception(failure)


def _failure_of(acked: asyncio.Future[None]) -> BaseException | None:
    """A done batch's failure (a lane never cancels one; if that changed, it still fails)."""
    if acked.cancelled():
        cancelled: BaseException = KafkaTimeoutError("a batch was cancelled unacknowledged")
        return cancelled
    return acked.exception()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Broker:
    """Sends records and waits for the broker's acknowledgement of every one.

    The producer starts lazily and restarts after a failed start, so the API comes up (and
    serves the catalog) while Kafka is down, and event endpoints answer 503 until it is back.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout: float,
        metrics: IngestMetrics,
        compression: str | None = None,
    ):
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._compression = compression
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._lanes: dict[tuple[str, int], PartitionLane] = {}
        self.healthy = True  # False since the last failure, until a send succeeds again

    async def start(self) -> None:
        """Try to connect now; a failure is logged, not raised (sends retry the start)."""
        with contextlib.suppress(BrokerUnavailable):
            await self._ensure_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._closed:
                raise BrokerUnavailable({"broker": ["shutting_down"]})
            if self._producer is not None:
                return self._producer
            timeout_ms = int(self._timeout * 1000)
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=timeout_ms,
                linger_ms=2,
                max_batch_size=MAX_BATCH_BYTES,
                compression_type=self._compression,
            )
            try:
                await asyncio.wait_for(producer.start(), self._timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                self.healthy = False
                await producer.stop()
                log.warning("kafka.unavailable bootstrap=%s error=%r", self._bootstrap, exc)
                raise BrokerUnavailable({"broker": ["unavailable"]}) from exc
            log.info("kafka.producer_started bootstrap=%s", self._bootstrap)
            self._producer = producer
            return producer

    def _lane(self, producer: AIOKafkaProducer, topic: str, partition: int) -> PartitionLane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = PartitionLane(producer, topic, partition)
        return lane

    async def send_records(self, topic: str, records: Sequence[Keyed]) -> None:
        """Queue every record (each one Kafka record, at its key's partition), then wait
        until the broker acknowledged all of them.

        Raises BrokerUnavailable if any is not acknowledged within the timeout: the caller
        then answers 503 and the client resends (duplicates are dropped downstream).
        """

        def by_partition(partitions: list[int]) -> dict[int, list[Keyed]]:
            return _grouped(records, partitions)

        await self._send(topic, len(records), by_partition, PartitionLane.add, _record_size)

    async def send_packed(self, topic: str, messages: Sequence[Message]) -> None:
        """As `send_records`, for encoded events: each partition's travel merged into packs
        (`meterflow.event_records`, `OpenPack`)."""

        def by_partition(partitions: list[int]) -> dict[int, list[Part]]:
            grouped = _grouped(messages, partitions)
            return {p: [(value, 1) for _, value in group] for p, group in grouped.items()}

        await self._send(topic, len(messages), by_partition, PartitionLane.add_events, _part_size)

    async def send_events(self, topic: str, events: Sequence[WireEvent]) -> None:
        """As `send_packed`, for events keyed by external_subscription_id: each
        partition's events, in their order, are encoded together (`encode_events`: a pack
        in one call)."""

        def by_partition(partitions: list[int]) -> dict[int, list[Part]]:
            grouped: dict[int, list[WireEvent]] = {}
            known: dict[str, list[WireEvent]] = {}  # a key's partition's group
            for event in events:
                key = event.external_subscription_id
                group = known.get(key)
                if group is None:
                    partition = partitions[partition_for(key.encode(), len(partitions))]
                    group = known[key] = grouped.setdefault(partition, [])
                group.append(event)
            return {p: encode_events(e, MAX_PACK_BYTES) for p, e in grouped.items()}

        await self._send(topic, len(events), by_partition, PartitionLane.add_events, _part_size)

    async def _send(
        self,
        topic: str,
        count: int,
        by_partition: Callable[[list[int]], dict[int, list[_Item]]],
        add: Callable[[PartitionLane, list[_Item]], list[asyncio.Future[None]]],
        size: Callable[[_Item], int],
    ) -> None:
        """Records or events (from `by_partition` of the topic's partitions) to their lanes
        (`add`: `PartitionLane.add` or `.add_events`; `size`: an item's bytes), then wait
        for every acknowledgement; `count` (messages or events) is for the log."""
        producer = await self._ensure_producer()
        started = time.perf_counter()
        try:
            partitions = producer.client.cluster.partitions_for_topic(topic)
            if partitions is None:  # not known yet: ask the broker, within the deadline
                async with asyncio.timeout(self._timeout):
                    partitions = await producer.partitions_for(topic)
            grouped = by_partition(sorted(partitions))
            for items in grouped.values():
                for item in items:
                    if size(item) + _RECORD_OVERHEAD > MAX_RECORD_BYTES:
                        raise MessageSizeTooLargeError(f"a record of {size(item)} bytes")
            lanes = [(self._lane(producer, topic, p), group) for p, group in grouped.items()]
            if any(lane.full for lane, _ in lanes):
                raise KafkaTimeoutError("records waiting for the broker fill the buffer")
            await self._acknowledged([acked for lane, group in lanes for acked in add(lane, group)])
        except (KafkaError, TimeoutError) as exc:
            self.healthy = False
            self._metrics.produce_failures.inc()
            log.warning("kafka.produce_failed topic=%s messages=%d error=%r", topic, count, exc)
            raise BrokerUnavailable({"broker": ["unavailable"]}) from exc
        finally:
            self._metrics.produce_latency.observe(time.perf_counter() - started)
        self.healthy = True

    async def _acknowledged(self, acks: list[asyncio.Future[None]]) -> None:
        """Wait until every batch of a request is acknowledged: the first batch's failure,
        or TimeoutError after the produce timeout. The batches are shared with other
        requests, so their futures are never awaited (a cancelled wait would cancel them):
        one future and one timer per request, resolved by callbacks on the batches (cheaper
        than a shield per batch inside `asyncio.timeout`, on every request)."""
        if not acks:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        remaining = len(acks)

        def acknowledged(acked: asyncio.Future[None]) -> None:
            nonlocal remaining
            if waiter.done():
                return
            failure = _failure_of(acked)
            if failure is not None:
                waiter.set_exception(failure)
                return
            remaining -= 1
            if not remaining:
                waiter.set_result(None)

        for acked in acks:
            acked.add_done_callback(acknowledged)
        timer = loop.call_later(self._timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if remaining:  # failed, timed out or cancelled: the batches keep no callback
                for acked in acks:
                    acked.remove_done_callback(acknowledged)

    async def close(self) -> None:
        """Submit what the lanes hold, flush what is queued and disconnect."""
        async with self._lock:
            self._closed = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    for lane in list(self._lanes.values()):
                        await lane.wait_idle()
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
