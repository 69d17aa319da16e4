"""The loop sampler names what held the event loop's thread during a long wake-up."""

from __future__ import annotations

import time

from aggregator.loop_sampler import LoopSampler, describe


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
