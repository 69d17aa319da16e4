"""The loop watch measures how long the worker's own code held the event loop; the loop
sampler names what held the loop's thread during a long wake-up."""

from __future__ import annotations

import asyncio
import time

from aggregator.loop_sampler import LoopSampler, describe
from aggregator.metrics import AggregatorMetrics


def _spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def test_the_summary_names_the_function_that_held_the_thread() -> None:
    sampler = LoopSampler(every=0.002)
    sampler.start()
    try:
        started = time.perf_counter()
        _spin(0.15)
        summary = sampler.summary(started)
    finally:
        sampler.stop()
    assert summary.startswith("test_aggregator_loop_sampler.py:_spin:"), summary


def test_a_sample_outside_the_workers_code_is_named_by_its_innermost_frame() -> None:
    assert describe(None) == "?"


async def _watch_while(work: float, turns: int) -> AggregatorMetrics:
    """Watch the loop while a task holds it `turns` times for `work` seconds each, giving it
    back in between."""
    metrics = AggregatorMetrics()
    done = False
    watch = asyncio.create_task(metrics.watch_event_loop(lambda: done))
    await asyncio.sleep(0.05)
    for _ in range(turns):
        _spin(work)
        await asyncio.sleep(0)
    done = True
    await watch
    return metrics


def test_a_turn_that_holds_the_loop_is_the_workers_stall() -> None:
    metrics = asyncio.run(_watch_while(0.15, 1))
    assert metrics.loop_busy._peak >= 0.1
    assert metrics.loop_busy._peak <= metrics.loop_stall._peak


def test_short_turns_back_to_back_are_no_long_stall() -> None:
    # 25 ms turns one after the other: a timer waits behind at most two of them (the one
    # running when it falls due, and the one queued before it in the next turn).
    metrics = asyncio.run(_watch_while(0.025, 20))
    assert 0.0 < metrics.loop_busy._peak <= metrics.loop_stall._peak
    assert metrics.loop_busy._peak < 0.1
