"""Per-partition watermarks of the events topic: the latest instant before which every event
the broker accepted on a partition has been applied by this worker.

How a watermark advances: at instant `t` the worker asks the broker for the partition's end
offset `L` (one ListOffsets request for all owned partitions). Every event acknowledged
before `t` has an offset below `L` (ingest answers 200 only after the broker acknowledged),
so once the worker's applied progress on the partition reaches `L`, every event accepted
before `t` is applied: the watermark becomes `t`. An idle partition reaches `L` at once, so
it counts as caught up; a busy one trails by about its consumer lag. No event timestamp is
trusted here (producers' clocks are theirs): the period closer adds a clock-skew allowance
for events stamped before a period's end but sent after it.

One question per partition is outstanding at a time; the next is asked once it is answered
(the driver asks at every tick), so a watermark never waits for a moving target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition


class Watermarks:
    """What was asked of the broker, and the watermark reached, per source partition."""

    def __init__(self) -> None:
        self._marks: dict[int, float] = {}
        self._asked: dict[int, tuple[float, int]] = {}

    def to_ask(self, partitions: Iterable[int]) -> list[int]:
        """The partitions without a question outstanding."""
        return sorted(p for p in partitions if p not in self._asked)

    def asked(self, at: float, ends: Mapping[int, int]) -> None:
        """The broker said, at (or after) `at`, that partition p ends at offset ends[p]."""
        for partition, end in ends.items():
            self._asked[partition] = (at, end)

    def advance(self, applied: Mapping[int, int]) -> list[int]:
        """Move the watermark of every partition whose applied progress (the next offset to
        apply) reached the end offset asked; returns the partitions that moved."""
        moved = []
        for partition, (at, end) in list(self._asked.items()):
            if applied.get(partition, 0) >= end:
                del self._asked[partition]
                if at > self._marks.get(partition, float("-inf")):
                    self._marks[partition] = at
                    moved.append(partition)
        return moved

    def mark(self, partition: int) -> float | None:
        """The partition's watermark (Unix seconds), None before the first answer reached."""
        return self._marks.get(partition)

    def clear(self) -> None:
        """Partitions moved: the progress of the new assignment is not known yet."""
        self._marks.clear()
        self._asked.clear()


class EndOffsets:
    """Asks the broker for the end offsets of events partitions (a consumer without a group,
    started on first use and kept)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def ends(self, partitions: list[int]) -> dict[int, int]:
        if not partitions:
            return {}
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._consumer = consumer
        tps = [TopicPartition(self.topic, p) for p in partitions]
        found = await self._consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in found.items()}

    async def stop(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None
