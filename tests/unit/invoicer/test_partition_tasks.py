"""Partition tasks: a partition takes its next records as soon as its own task is done, while
a slower partition is still working; a partition never has two tasks; errors surface.
(The consumer here is a stand-in for its two calls the scheduling uses: the real consumer
runs in tests/integration/invoicer.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from invoicer.partition_tasks import PartitionTasks

FAST, SLOW = TopicPartition("periods-closed", 0), TopicPartition("periods-closed", 1)


class _Fetched:
    """Records waiting per partition, handed out the way getmany does (the named partitions,
    or all when none is named)."""

    def __init__(self, waiting: dict[TopicPartition, list[list[int]]]) -> None:
        self.waiting = waiting

    def assignment(self) -> set[TopicPartition]:
        return set(self.waiting)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int = 0
    ) -> dict[TopicPartition, list[int]]:
        named = partitions or tuple(self.waiting)
        return {tp: self.waiting[tp].pop(0) for tp in named if self.waiting[tp]}


async def test_a_partition_done_early_takes_its_next_records_while_another_works() -> None:
    fetched = _Fetched({FAST: [[1], [2], [3]], SLOW: [[10], [11]]})
    release_slow = asyncio.Event()
    seen: list[tuple[int, int]] = []
    running: set[TopicPartition] = set()

    async def process(tp: TopicPartition, records: list[Any]) -> None:
        assert tp not in running, "two tasks for one partition"
        running.add(tp)
        seen.append((tp.partition, records[0]))
        if tp == SLOW:
            await release_slow.wait()
        running.discard(tp)

    tasks = PartitionTasks(fetched, process, batch_size=10)  # type: ignore[arg-type]
    for _ in range(10):
        await tasks.take()
        await tasks.finish_some()
    # The fast partition went through all its records; the slow one is still on its first.
    assert [r for p, r in seen if p == 0] == [1, 2, 3]
    assert [r for p, r in seen if p == 1] == [10]
    release_slow.set()
    await tasks.finish_all()
    await tasks.take()
    await tasks.finish_all()
    assert [r for p, r in seen if p == 1] == [10, 11]


async def test_a_failed_task_raises_once_the_others_are_let_finish() -> None:
    fetched = _Fetched({FAST: [[1]], SLOW: [[10]]})
    finished: list[int] = []

    async def process(tp: TopicPartition, records: list[Any]) -> None:
        if tp == FAST:
            raise RuntimeError("bug")
        await asyncio.sleep(0.01)
        finished.append(records[0])

    tasks = PartitionTasks(fetched, process, batch_size=10)  # type: ignore[arg-type]
    await tasks.take()
    with pytest.raises(RuntimeError, match="bug"):
        await tasks.finish_all()
    assert finished == [10]
