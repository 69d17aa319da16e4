"""Freshness probes: one event at a time for a subscription that gets nothing else, each
timed from its HTTP 200 to the moment current usage counts it (`bench.freshness`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import report
from bench.workload import COUNT_CODE, WrongTotals

PROBE = "probe"
POLL_STEP = 0.01
VISIBLE_TIMEOUT = 30.0


async def probe_loop(
    send: Callable[[int], Awaitable[None]],
    count: Callable[[], Awaitable[int]],
    interval: float,
    until: float,
) -> list[float]:
    """A sender posts probe n every `interval` (after probe n - 1's 200, so they stay in
    order) and notes when its 200 arrived; a reader polls the probe count every POLL_STEP
    and gives each newly counted probe its delay. A probe counted before its 200 was read
    gets 0."""
    answered: list[float] = []  # perf_counter() of each probe's 200
    delays: dict[int, float] = {}
    counted = 0  # highest count read so far

    async def sender() -> None:
        n = 0
        while time.monotonic() < until:
            tick = time.monotonic()
            await send(n)
            answered.append(time.perf_counter())
            if n < counted:
                delays[n] = 0.0
            n += 1
            await asyncio.sleep(max(0.0, tick + interval - time.monotonic()))

    task = asyncio.create_task(sender())
    try:
        while not task.done() or len(delays) < len(answered):
            if task.done() and task.exception() is not None:
                await task
            found = await count()
            now = time.perf_counter()
            if found > len(answered) + (0 if task.done() else 1) or found < counted:
                raise WrongTotals(f"probe count {found} after {len(answered)} probes answered")
            counted = found
            for n in range(len(delays), min(found, len(answered))):
                delays[n] = now - answered[n]
            waiting = len(delays)
            if waiting < len(answered) and now - answered[waiting] > VISIBLE_TIMEOUT:
                raise WrongTotals(f"probe {waiting} not visible {VISIBLE_TIMEOUT}s after its 200")
            await asyncio.sleep(POLL_STEP)
        await task
    finally:
        task.cancel()
    return [delays[n] for n in range(len(answered))]


def probe_event(n: int) -> dict[str, Any]:
    return {
        "transaction_id": f"probe-{n}",
        "external_subscription_id": PROBE,
        "code": COUNT_CODE,
        "timestamp": round(time.time(), 3),
    }


def summary(side: str, delays: list[float], load: dict[str, Any]) -> dict[str, Any]:
    return {
        "side": side,
        "probes": len(delays),
        "p50_ms": round(report.p50(delays) * 1000, 2),
        "p99_ms": round(report.p99(delays) * 1000, 2),
        "max_ms": round(max(delays) * 1000, 2) if delays else None,
        "background": {k: v for k, v in load.items() if k != "usage"},
        "delays_ms": [round(d * 1000, 1) for d in delays],
    }
