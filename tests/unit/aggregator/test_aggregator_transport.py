"""The transport's eager delivery: a record's delivery started by hand and, when it had to
wait, finished by a task exactly as if the task had run it from the start (issue 15)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from aggregator.kafka_transport import _finish


async def deliver(queue: asyncio.Queue[int], value: int) -> str:
    await queue.put(value)
    return f"delivered {value}"


async def test_a_delivery_that_waits_finishes_in_its_task() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)
    started = deliver(queue, 2)
    step = started.send(None)  # the queue is full: the delivery waits on a future
    rest = _finish(started, step)
    assert isinstance(rest, Awaitable)  # what mode's wait_first requires of a coroutine
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0.01)
    assert not task.done()
    assert queue.get_nowait() == 1  # room again: the waiting put goes through
    assert await task == "delivered 2"
    assert queue.get_nowait() == 2


async def test_a_delivery_cancelled_while_waiting_is_cancelled() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)
    started = deliver(queue, 2)
    task = asyncio.ensure_future(_finish(started, started.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue.qsize() == 1  # the cancelled put left nothing behind
