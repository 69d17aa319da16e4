"""A steady background load for the benchmarks, in a process of its own so it does not
share the measuring process's event loop: batches of `BATCH` events posted to
`POST /api/v1/events/batch` at a target rate, at most 8 in flight; it prints what was
accepted (summed as current usage must show it) as JSON on stdout.

    .venv/bin/python -m bench.steady_load URL --rate 2000 --seconds 30 --subscriptions 50
        (the API key in BENCH_API_KEY)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/steady_load.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from bench import report
from bench.workload import COUNT_CODE, SUM_FIELD, Usage, event

BATCH = 100


@dataclass(frozen=True, slots=True)
class Load:
    rate: float
    seconds: float
    warmup: float
    probe_interval: float
    subscriptions: int


def load_subscriptions(load: Load) -> list[str]:
    return [f"load-{i}" for i in range(load.subscriptions)]


async def generate_load(
    url: str, api_key: str, rate: float, seconds: float, subscriptions: int, tag: str
) -> dict[str, Any]:
    """Batches of 100 at `rate` events/s for `seconds`, at most 8 in flight (a batch that
    cannot start on time starts as soon as one returns: the achieved rate shows it).
    Returns what was accepted, summed as the current usage must show it."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    interval = BATCH / rate
    batches = max(1, round(rate * seconds / BATCH))
    in_flight = asyncio.Semaphore(8)
    stamp = datetime.now(UTC).timestamp() - 60
    calls = storage = accepted = 0
    gigabytes = Decimal(0)
    errors: list[str] = []
    latencies: list[float] = []

    async def post(session: aiohttp.ClientSession, made: list[dict[str, Any]]) -> None:
        nonlocal calls, storage, accepted, gigabytes
        try:
            started = time.perf_counter()
            async with session.post(url, data=orjson.dumps({"events": made})) as response:
                answer = await response.read()
                status = response.status
            latencies.append(time.perf_counter() - started)
        finally:
            in_flight.release()
        if status != 200:
            errors.append(f"{status}: {answer[:200]!r}")
            return
        accepted += len(made)
        for wire in made:
            if wire["code"] == COUNT_CODE:
                calls += 1
            else:
                storage += 1
                gigabytes += Decimal(wire["properties"][SUM_FIELD])

    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.monotonic()
        tasks = []
        for k in range(batches):
            delay = started + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            made = [
                event(f"load-{i % subscriptions}", i, stamp, tag=tag)
                for i in range(k * BATCH, (k + 1) * BATCH)
            ]
            tasks.append(asyncio.create_task(post(session, made)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return {
        "target_rate": rate,
        "seconds": round(elapsed, 2),
        "sent": batches * BATCH,
        "accepted": accepted,
        "achieved_rate": round(accepted / elapsed, 1),
        "errors": errors[:5],
        "error_count": len(errors),
        "latency_p50_ms": round(report.p50(latencies) * 1000, 2),
        "latency_p99_ms": round(report.p99(latencies) * 1000, 2),
        "usage": {"calls": calls, "storage_events": storage, "gigabytes": str(gigabytes)},
    }


class LoadProcess:
    """`python -m bench.steady_load URL ...` (its API key in the environment)."""

    def __init__(self, url: str, api_key: str, load: Load) -> None:
        env = dict(os.environ, BENCH_API_KEY=api_key)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.steady_load",
                url,
                "--rate",
                str(load.rate),
                "--seconds",
                str(load.seconds),
                "--subscriptions",
                str(load.subscriptions),
            ],
            env=env,
            cwd=report.REPO,
            stdout=subprocess.PIPE,
        )
        self.started = time.monotonic()

    async def result(self) -> dict[str, Any]:
        out, _ = await asyncio.to_thread(self.proc.communicate)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator exited with {self.proc.returncode}")
        found: dict[str, Any] = orjson.loads(out)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def expected_load(found: dict[str, Any]) -> Usage:
    usage = found["usage"]
    return Usage(usage["calls"], usage["storage_events"], Decimal(usage["gigabytes"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("url", help="the batch endpoint")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--subscriptions", type=int, default=50)
    args = parser.parse_args()
    found = asyncio.run(
        generate_load(
            args.url,
            os.environ["BENCH_API_KEY"],
            args.rate,
            args.seconds,
            args.subscriptions,
            tag=f"{uuid.uuid4().hex[:6]}-",
        )
    )
    sys.stdout.buffer.write(orjson.dumps(found))


if __name__ == "__main__":
    main()
