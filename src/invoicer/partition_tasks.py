"""The partitions the invoicer is working on, one task each: a partition's next records are
taken as soon as its own task is done, not once every partition of a poll is done, so a
partition that finishes early starts its next rounds while the others write theirs.

A partition has at most one task: its messages stay in order and its offsets commit in order,
as they did when each poll waited for all its partitions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

Process = Callable[[TopicPartition, list[ConsumerRecord[Any, Any]]], Coroutine[Any, Any, None]]

# When nothing runs, how long a poll waits for records.
IDLE_POLL_MS = 500
# While partitions run, how often the free ones are looked at for new records.
BUSY_POLL_SECONDS = 0.05


class PartitionTasks:
    """Takes records for the partitions that have no task running and starts one for each."""

    def __init__(self, consumer: AIOKafkaConsumer, process: Process, batch_size: int) -> None:
        self._consumer = consumer
        self._process = process
        self._batch_size = batch_size
        self._running: dict[TopicPartition, asyncio.Task[None]] = {}

    async def take(self) -> None:
        """Start a task for each free partition that has records: with none running, wait up
        to IDLE_POLL_MS for some; else take only what the consumer has fetched already.
        KafkaError when the broker is away (nothing taken)."""
        if not self._running:
            batches = await self._consumer.getmany(
                timeout_ms=IDLE_POLL_MS, max_records=self._batch_size
            )
        else:
            free = [tp for tp in self._consumer.assignment() if tp not in self._running]
            if not free:
                return
            batches = await self._consumer.getmany(
                *free, timeout_ms=0, max_records=self._batch_size
            )
        for tp, records in batches.items():
            self._running[tp] = asyncio.create_task(self._process(tp, records))

    async def finish_some(self) -> None:
        """Wait for a task to finish (at most BUSY_POLL_SECONDS while some partition is free
        to take more), forget the finished ones and raise the error of one that failed."""
        if not self._running:
            return
        all_busy = all(tp in self._running for tp in self._consumer.assignment())
        await asyncio.wait(
            self._running.values(),
            timeout=None if all_busy else BUSY_POLL_SECONDS,
            return_when=asyncio.FIRST_COMPLETED,
        )
        self._forget_finished()

    async def finish_all(self) -> None:
        """Let every running task finish (on stop, what was started is done and committed),
        then raise the error of one that failed."""
        if self._running:
            await asyncio.wait(self._running.values())
        self._forget_finished()

    def _forget_finished(self) -> None:
        finished = [tp for tp, task in self._running.items() if task.done()]
        tasks = [self._running.pop(tp) for tp in finished]
        for task in tasks:
            task.result()
