"""Per source partition of the events topic, the next offset to apply: durable in the
`progress` table (written after a batch's effects are durable), held in memory, and the
guard that makes a batch contiguous (faust-streaming 0.15.3 can deliver a message twice or
skip one around the seek to committed offsets when a worker starts; see `aggregator.app`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import TopicPartition

from aggregator.processing import SourceMessage
from aggregator.store import PartitionedStore
from meterflow.event_records import requeued_from
from meterflow.topics import reader

log = logging.getLogger(__name__)


class SourceProgress:
    def __init__(self, table: PartitionedStore, bootstrap_servers: str, topic: str) -> None:
        self.table = table
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._expected: dict[int, int] = {}
        self.gap_filled = 0  # messages read back to fill holes (a metric)

    def next_offset(self, partition: int) -> int:
        """The next offset of the partition to apply: everything below it is applied."""
        expected = self._expected.get(partition)
        if expected is None:
            stored = self.table.get(f"p{partition}")
            expected = 0 if stored is None else int(stored["next"])
        return expected

    def applied(self, partitions: Iterable[int]) -> dict[int, int]:
        return {partition: self.next_offset(partition) for partition in partitions}

    def known(self) -> dict[int, int]:
        """The progress held in memory (partitions this worker applied a batch of)."""
        return dict(self._expected)

    def advance(self, expected: dict[int, int]) -> None:
        """A batch's effects are durable: record where each of its partitions now stands
        (in memory, and queued for the table; the caller flushes it)."""
        self._expected.update(expected)
        for partition, next_offset in expected.items():
            self.table.put(partition, f"p{partition}", {"next": next_offset})

    async def contiguous(
        self, messages: list[SourceMessage]
    ) -> tuple[list[SourceMessage], dict[int, int]]:
        """The batch's messages with nothing skipped and nothing applied before.

        faust-streaming 0.15.3 can, around the seek to committed offsets when a worker starts,
        deliver a message twice or acknowledge one without ever handing it to the agent (and
        then commit past it). Messages below a partition's durable progress are dropped
        here; a hole is filled by reading the missing offsets straight from Kafka. Also
        returns each partition's next offset once the batch is applied.
        """
        by_partition: dict[int, list[SourceMessage]] = {}
        for message in messages:
            by_partition.setdefault(message.partition, []).append(message)
        result: list[SourceMessage] = []
        progress: dict[int, int] = {}
        for partition, items in by_partition.items():
            expected = self.next_offset(partition)
            for message in items:
                if message.offset < expected:
                    continue
                if message.offset > expected:
                    missing = await self.read_range(partition, expected, message.offset)
                    log.warning(
                        "aggregator.offset_gap_filled partition=%d from=%d to=%d read=%d",
                        partition,
                        expected,
                        message.offset,
                        len(missing),
                    )
                    self.gap_filled += len(missing)
                    result.extend(missing)
                result.append(message)
                expected = message.offset + 1
            progress[partition] = expected
        return result, progress

    async def read_range(self, partition: int, start: int, end: int) -> list[SourceMessage]:
        """Messages [start, end) of one events partition, read with a plain consumer."""
        tp = TopicPartition(self.topic, partition)
        found: list[SourceMessage] = []
        async with reader(self.bootstrap_servers) as consumer:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for record in batches.get(tp, []):
                    if start <= record.offset < end:
                        found.append(
                            SourceMessage(
                                partition,
                                record.offset,
                                record.key,
                                record.value,
                                record.timestamp,
                                requeued_from(record.headers),
                            )
                        )
        return found

    def forget(self) -> None:
        """Partitions moved: read each one's progress again from the (recovered) table."""
        self._expected.clear()
