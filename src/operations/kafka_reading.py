"""Reading the deployment's topics as an operator does: no consumer group, no commits,
records fetched by position."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from meterflow.topics import reader as reader  # where operations take it from


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, in order (empty when the topic does not exist)."""
    # consumer.partitions_for_topic only knows topics it was asked about before; a fresh
    # look at the whole cluster knows them all.
    cluster = await consumer._client.fetch_all_metadata()
    numbers = cluster.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(numbers)]


async def records_at(
    consumer: AIOKafkaConsumer, wanted: dict[TopicPartition, int], timeout_ms: int = 5000
) -> dict[TopicPartition, Any]:
    """The record at one offset of each partition (absent when nothing is there)."""
    if not wanted:
        return {}
    consumer.assign(list(wanted))
    for tp, offset in wanted.items():
        consumer.seek(tp, offset)
    found: dict[TopicPartition, Any] = {}
    for _ in range(5):
        batch = await consumer.getmany(timeout_ms=timeout_ms // 5, max_records=len(wanted) * 50)
        for tp, records in batch.items():
            for record in records:
                if tp not in found and record.offset >= wanted[tp]:
                    found[tp] = record
                    consumer.pause(tp)
        if len(found) == len(wanted):
            break
    return found


async def read_range(
    consumer: AIOKafkaConsumer,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    batch: int = 5000,
) -> AsyncIterator[Any]:
    """Every record of each partition from `start` (inclusive) to `end` (exclusive)."""
    todo = {tp: off for tp, off in start.items() if off < end[tp]}
    if not todo:
        return
    consumer.assign(list(todo))
    for tp, offset in todo.items():
        consumer.seek(tp, offset)
    while todo:
        fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
        for tp, records in fetched.items():
            for record in records:
                if tp in todo and record.offset < end[tp]:
                    yield record
        for tp in list(todo):
            # By position, not by the last offset seen: compaction and transaction markers
            # leave gaps, so the record at end - 1 may not exist.
            if await consumer.position(tp) >= end[tp]:
                del todo[tp]
                consumer.pause(tp)
