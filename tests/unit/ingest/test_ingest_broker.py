"""PartitionLane against a stand-in producer: concurrent requests' records share one batch
per partition, in order; the next batch fills while one is unacknowledged; a failure reaches
every request whose records the batch holds; a lane stuck on an unanswering broker refuses
more records instead of growing. Events of concurrent requests merge into one pack record
(at most `PACK_LIMIT` events), in order, and a failure reaches every request of the pack.
A request's wait on its batches ends with the last acknowledgement, the first failure or the
produce timeout, and never cancels a batch that other requests share."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from ingest.broker import MAX_QUEUED_BATCHES, Broker, PartitionLane
from meterflow.event_records import PACK_LIMIT, decode_record
from web.metrics import IngestMetrics


class Batch:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        self.closed = False

    def append(
        self, *, key: bytes, value: bytes, timestamp: None, headers: list[tuple[str, bytes]]
    ) -> object | None:
        assert not self.closed
        assert isinstance(headers, list), "aiokafka's record builder takes a list only"
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.closed = True

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """Hands out batches and keeps each submitted one with its acknowledgement to resolve."""

    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self.sent: list[tuple[Batch, asyncio.Future[Any]]] = []

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        assert (topic, partition) == ("events", 2) and batch.closed
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((batch, ack))
        return ack


def records(*values: str) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(b"k", v.encode(), [(v, b"h")]) for v in values]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_requests_share_a_batch_and_the_next_fills_meanwhile() -> None:
    producer = Producer()
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    first = lane.add(records("a1", "a2"))
    second = lane.add(records("b1"))
    assert first == second  # one batch, one acknowledgement
    await settle()
    assert [b.records for b, _ in producer.sent] == [records("a1", "a2", "b1")]
    third = lane.add(records("c1", "c2"))
    await settle()
    assert len(producer.sent) == 1, "the next batch waits for the first one's acknowledgement"
    producer.sent[0][1].set_result(None)
    await settle()
    assert first[0].done() and not third[0].done()
    assert [b.records for b, _ in producer.sent] == [records("a1", "a2", "b1"), records("c1", "c2")]
    producer.sent[1][1].set_result(None)
    await settle()
    assert third[0].done() and third[0].exception() is None
    await lane.wait_idle()


async def test_a_full_batch_moves_on_to_the_next_keeping_the_order() -> None:
    producer = Producer(capacity=2)
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    acks = lane.add(records("1", "2", "3", "4", "5"))
    assert len(acks) == 3
    for _ in range(3):
        await settle()
        producer.sent[-1][1].set_result(None)
    await lane.wait_idle()
    assert [b.records for b, _ in producer.sent] == [
        records("1", "2"),
        records("3", "4"),
        records("5"),
    ]
    assert all(ack.done() and ack.exception() is None for ack in acks)


async def test_a_failed_batch_fails_its_requests_and_the_lane_goes_on() -> None:
    producer = Producer()
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    failed = lane.add(records("a"))
    await settle()
    later = lane.add(records("b"))
    producer.sent[0][1].set_exception(KafkaConnectionError())
    await settle()
    with pytest.raises(KafkaConnectionError):
        await asyncio.shield(failed[0])
    producer.sent[1][1].set_result(None)
    await asyncio.shield(later[0])
    await lane.wait_idle()


async def test_a_lane_waiting_on_the_broker_refuses_more_than_its_buffer() -> None:
    producer = Producer(capacity=1)
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    lane.add(records("sent"))
    await settle()  # submitted, never acknowledged
    for n in range(MAX_QUEUED_BATCHES):
        assert not lane.full
        lane.add(records(f"q{n}"))
    lane.add(records("filling"))
    assert lane.full
    producer.sent[0][1].set_result(None)
    for _ in range(MAX_QUEUED_BATCHES + 1):
        await settle()
        producer.sent[-1][1].set_result(None)
    await lane.wait_idle()
    assert not lane.full
    assert len(producer.sent) == MAX_QUEUED_BATCHES + 2


async def test_a_record_no_batch_takes_is_refused_not_dropped() -> None:
    producer = Producer(capacity=0)
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    with pytest.raises(MessageSizeTooLargeError):
        lane.add(records("huge"))


def events(*names: str) -> tuple[bytes, int]:
    """A request's events for one partition as ingest encodes them: one object, or a pack."""
    encoded = [orjson.dumps({"transaction_id": name}) for name in names]
    return (encoded[0], 1) if len(encoded) == 1 else (b"[" + b",".join(encoded) + b"]", len(names))


def sent_events(producer: Producer) -> list[list[list[str]]]:
    """Per submitted batch, per record, its events' transaction ids (as the aggregator
    decodes a record: a pack or a lone event)."""
    return [
        [[e["transaction_id"] for e in decode_record(value)] for _, value, _ in batch.records]
        for batch, _ in producer.sent
    ]


async def test_concurrent_requests_events_merge_into_one_pack_while_a_batch_is_out() -> None:
    producer = Producer()
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    first = lane.add_events([events("a1", "a2")])
    await settle()
    assert sent_events(producer) == [[["a1", "a2"]]]
    # While that batch is unacknowledged, three requests' events become one record.
    later = [lane.add_events([events("b1", "b2")]), lane.add_events([events("c1")])]
    later.append(lane.add_events([events("d1", "d2", "d3")]))
    assert later[0] == later[1] == later[2], "one pack, one acknowledgement"
    await settle()
    assert len(producer.sent) == 1
    producer.sent[0][1].set_result(None)
    await settle()
    assert sent_events(producer)[1] == [["b1", "b2", "c1", "d1", "d2", "d3"]]
    assert first[0].done() and not later[0][0].done()
    producer.sent[1][1].set_result(None)
    await settle()
    assert later[0][0].done() and later[0][0].exception() is None
    await lane.wait_idle()


async def test_a_pack_holds_at_most_pack_limit_events_and_keeps_the_order() -> None:
    producer = Producer()
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    lane.add_events([events("first")])
    await settle()  # out, unacknowledged: what follows merges
    names = [f"e{n}" for n in range(PACK_LIMIT + 10)]
    acks = lane.add_events([events(*names[i : i + 100]) for i in range(0, len(names), 100)])
    assert len(acks) == 2  # the pack that filled, and the next
    producer.sent[0][1].set_result(None)
    await settle()
    records = sent_events(producer)[1]
    assert [len(r) for r in records] == [PACK_LIMIT - 24, 34]  # whole requests' parts
    assert [name for record in records for name in record] == names
    producer.sent[1][1].set_result(None)
    await lane.wait_idle()
    assert all(ack.done() and ack.exception() is None for ack in acks)


async def test_a_failed_batch_fails_every_request_of_its_merged_pack() -> None:
    producer = Producer()
    lane = PartitionLane(producer, "events", 2)  # type: ignore[arg-type]
    lane.add_events([events("a")])
    await settle()
    merged = [lane.add_events([events("b")]), lane.add_events([events("c", "d")])]
    producer.sent[0][1].set_result(None)
    await settle()
    producer.sent[1][1].set_exception(KafkaConnectionError())
    await settle()
    for acks in merged:
        with pytest.raises(KafkaConnectionError):
            await asyncio.shield(acks[0])
    later = lane.add_events([events("e")])
    await settle()
    producer.sent[2][1].set_result(None)
    await asyncio.shield(later[0])
    assert sent_events(producer)[1:] == [[["b", "c", "d"]], [["e"]]]
    await lane.wait_idle()


def batches(count: int) -> list[asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    return [loop.create_future() for _ in range(count)]


def broker(timeout: float) -> Broker:
    return Broker("127.0.0.1:1", timeout=timeout, metrics=IngestMetrics(CollectorRegistry()))


async def test_a_request_waits_for_every_batch_it_touched() -> None:
    acks = batches(3)
    acks[0].set_result(None)  # acknowledged before the request waits
    wait = asyncio.ensure_future(broker(5)._acknowledged(acks))
    await settle()
    acks[1].set_result(None)
    await settle()
    assert not wait.done()
    acks[2].set_result(None)
    await wait


async def test_a_failed_batch_fails_the_request_at_once() -> None:
    acks = batches(2)
    wait = asyncio.ensure_future(broker(5)._acknowledged(acks))
    acks[1].set_exception(KafkaConnectionError())
    with pytest.raises(KafkaConnectionError):
        await wait


async def test_a_timed_out_or_cancelled_request_leaves_the_shared_batches_alone() -> None:
    acks = batches(2)
    with pytest.raises(TimeoutError):
        await broker(0.01)._acknowledged(acks)
    wait = asyncio.ensure_future(broker(5)._acknowledged(acks))
    await settle()
    wait.cancel()
    await settle()
    assert not any(ack.done() for ack in acks)
    assert all(not ack._callbacks for ack in acks)  # nothing left behind either
