"""A worker restarted with a million open keys: how long until it answers current usage again,
how long its event loop stalls meanwhile, and then while it closes every period at once.

    .venv/bin/python -m bench.aggregator_restart [--subscriptions 500000] [--store rocksdb]
        [--close]

One `meterflow aggregator` process on its own topics: a catalog of S subscriptions (a plan
with two charges, so 2 x S open (subscription, charge, period) keys), then one event per key,
each with its own transaction id (2 x S dedupe markers). Once it has applied them all (and
committed), the worker is killed with SIGKILL and started again on the same data directory.
Measured: seconds from the new process's start to `/ready`, and to the first right answer of
current usage for a sample of 200 subscriptions (checked: one event per charge); resident
memory before the kill and after the restart, and the state the worker keeps on disk
(its data directory) before the kill; the event loop's longest stall, from the
worker's own `meterflow_aggregator_loop_stall_seconds` histogram (stalls over 100 ms counted
per phase). `--close` then terminates every subscription (one catalog record each): the
worker closes S periods and emits S `periods_closed` messages; measured: seconds until its
counter shows them all, and the stalls over 100 ms meanwhile. `--store memory` runs the
same with the memory store (the state before issue 15's work: rebuilt from the changelogs).
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_restart.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from aggregator.markers import DedupeMarkers, NewMarker, expiry_day, marker_hash
from aggregator.store import MemoryStore
from bench import report
from bench.memory import (
    APPLIED,
    Case,
    case_events,
    produce_catalog,
    send_catalog,
    subscription,
    subscription_record,
    worker_env,
)
from bench.processes import ServiceProcess, delete_app_topics, metrics
from bench.stall_profile import py_spy, stop_py_spy
from bench.workload import (
    Usage,
    WrongTotals,
    produce_events,
    usage_from_meterflow,
)
from meterflow.catalog import CatalogRecord
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics

STALLS = "meterflow_aggregator_loop_stall_seconds"
STALL_MAX = "meterflow_aggregator_loop_stall_max_seconds"
BUSY = "meterflow_aggregator_loop_busy_seconds"
BUSY_MAX = "meterflow_aggregator_loop_busy_max_seconds"
CLOSED = "meterflow_aggregator_periods_closed_total"
SAMPLE = 200
TIMEOUT = 1200.0


def disk_bytes(root: Path, log: Path) -> int:
    """The bytes of every file under `root` but the worker's log."""
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and path != log)


def stalls_over(sample: dict[str, float], limit: str = "0.1", name: str = STALLS) -> float:
    """Stalls longer than `limit` seconds so far (histogram count minus its `le` bucket);
    with `name=BUSY`, those where the loop's own CPU time was longer."""
    return sample.get(f"{name}_count", 0.0) - sample.get(f'{name}_bucket{{le="{limit}"}}', 0.0)


async def answers(port: int, organization_id: str, picks: list[int]) -> bool:
    """Every picked subscription's current usage shows its one event per charge."""
    expected = Usage(1, 1, Decimal(1))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for i in picks:
            url = (
                f"http://127.0.0.1:{port}/current-usage/{subscription(i)}"
                f"?organization_id={organization_id}"
            )
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        return False
                    body = orjson.loads(await response.read())
            except (aiohttp.ClientError, TimeoutError):
                return False
            expected.check("meterflow", subscription(i), usage_from_meterflow(body))
    return True


async def wait_for(worker: ServiceProcess, what: str, check: Any, started: float) -> float:
    while not await check():
        if worker.proc.poll() is not None:
            raise worker.failed("exited")
        if time.monotonic() - started > TIMEOUT:
            raise worker.failed(f"{what} not reached within {TIMEOUT}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def newer(record: CatalogRecord) -> CatalogRecord:
    """The same record as version 2."""
    return CatalogRecord(record.kind, record.lago_id, record.organization_id, 2, record.body)


async def terminate_all(settings: Settings, organization_id: str, subscriptions: int) -> None:
    """A termination record (version 2, terminated now) for every subscription."""
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    await send_catalog(
        settings,
        (newer(subscription_record(organization_id, i, now)) for i in range(subscriptions)),
    )


async def measure(
    base: Settings,
    subscriptions: int,
    store: str,
    close: bool,
    keep_log: Path | None,
    profile: Path | None,
) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(base, topics=Topics(prefix=prefix))
    app_id = f"{prefix}aggregator"
    organization_id = str(uuid.uuid4())
    case = Case(subscriptions, 1)
    picks = random.Random(7).sample(range(subscriptions), min(SAMPLE, subscriptions))
    found: dict[str, Any] = {"subscriptions": subscriptions, "keys": case.keys, "store": store}
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        await produce_catalog(settings, organization_id, subscriptions)
        with tempfile.TemporaryDirectory() as tmp:
            env, port, metrics_port = worker_env(
                settings,
                app_id,
                tmp,
                METERFLOW_AGGREGATOR_STORE=store,
                METERFLOW_LOG_LEVEL="INFO",
                METERFLOW_AGGREGATOR_LOOP_SAMPLE_EVERY="0.005",  # what ran in a long wake-up
            )
            log_path = Path(tmp) / "aggregator.log"

            async def sample() -> dict[str, float]:
                return await asyncio.to_thread(metrics, metrics_port)

            worker = ServiceProcess("aggregator", env, log_path)
            spy = None
            try:
                found["first_start_seconds"] = round(await worker.wait_http(port, "/ready"), 1)
                started = time.monotonic()
                # The first start's own stalls (loading the catalog, seeding), apart.
                at_ready = await sample()
                found["stalls_over_100ms_first_start"] = stalls_over(at_ready)
                found["busy_over_100ms_first_start"] = stalls_over(at_ready, name=BUSY)
                if profile is not None:
                    spy = py_spy(worker.proc.pid, profile.with_name(profile.stem + ".apply.json"))
                await produce_events(settings, organization_id, case_events(case, time.time() - 60))

                async def applied() -> bool:
                    return (await sample()).get(APPLIED, 0.0) >= case.events

                applying = await wait_for(worker, "applied", applied, started)
                found["apply_seconds"] = round(applying, 1)
                await asyncio.sleep(5)  # offsets committed (every 2 s)
                found["rss_before_kill_mb"] = round(worker.rss() / 2**20)
                # What the worker keeps on disk (RocksDB: ledgers, marker segments), beside
                # what it holds in RAM.
                found["state_on_disk_mb"] = round(disk_bytes(Path(tmp), log_path) / 2**20)
                applied_sample = await sample()
                found["stalls_over_100ms_applying"] = stalls_over(applied_sample) - stalls_over(
                    at_ready
                )
                found["busy_over_100ms_applying"] = stalls_over(
                    applied_sample, name=BUSY
                ) - stalls_over(at_ready, name=BUSY)
                found["applying_stall_max_ms"] = round(applied_sample.get(STALL_MAX, 0.0) * 1e3)
                found["applying_busy_max_ms"] = round(applied_sample.get(BUSY_MAX, 0.0) * 1e3)
            finally:
                if spy is not None:
                    stop_py_spy(spy)
                worker.kill()
            worker = ServiceProcess("aggregator", env, log_path)
            spy = None if profile is None else py_spy(worker.proc.pid, profile)
            try:
                started = time.monotonic()
                found["restart_ready_seconds"] = round(await worker.wait_http(port, "/ready"), 2)

                async def right() -> bool:
                    return await answers(port, organization_id, picks)

                found["restart_answers_seconds"] = round(
                    await wait_for(worker, "answers", right, started), 2
                )
                after = await sample()
                found["rss_after_restart_mb"] = round(worker.rss() / 2**20)
                found["restart_stall_max_ms"] = round(after.get(STALL_MAX, 0.0) * 1000, 1)
                found["stalls_over_100ms_restart"] = stalls_over(after)
                found["restart_busy_max_ms"] = round(after.get(BUSY_MAX, 0.0) * 1000, 1)
                found["busy_over_100ms_restart"] = stalls_over(after, name=BUSY)
                if close:
                    before = stalls_over(after)
                    busy_before = stalls_over(after, name=BUSY)
                    started = time.monotonic()
                    await terminate_all(settings, organization_id, subscriptions)

                    async def closed() -> bool:
                        return (await sample()).get(CLOSED, 0.0) >= subscriptions

                    found["close_all_seconds"] = round(
                        await wait_for(worker, "closes", closed, started), 1
                    )
                    done = await sample()
                    found["stalls_over_100ms_closing"] = stalls_over(done) - before
                    found["busy_over_100ms_closing"] = stalls_over(done, name=BUSY) - busy_before
                    found["busy_max_ms_overall"] = round(done.get(BUSY_MAX, 0.0) * 1000, 1)
                    found["stall_max_ms_overall"] = round(done.get(STALL_MAX, 0.0) * 1000, 1)
            finally:
                if spy is not None:
                    stop_py_spy(spy)
                worker.stop()
                if keep_log is not None:
                    shutil.copyfile(log_path, keep_log)
    finally:
        await delete_app_topics(settings, app_id)
        await delete_topics(settings.bootstrap_servers, settings.topics)
    return found


async def marker_slices(markers: int, per_batch: int = 1_000) -> dict[str, Any]:
    """In this process: `markers` dedupe markers written as a worker writes them (a segment
    per batch of `per_batch`, each marker its own subscription, all due the same day), then
    the index built again from the segments and every marker expired at once; the longest
    time between two yields to the event loop is the longest stall each can cause."""
    day = expiry_day(datetime.now(UTC))
    store = MemoryStore(raw=True)
    writer = DedupeMarkers(store)
    for b in range(markers // per_batch):
        writer.write(
            [
                NewMarker(f"o\x1fs{i}", marker_hash(f"t{b}-{i}"), 0, b * per_batch + i, day)
                for i in range(per_batch)
            ]
        )
    rebuilt = DedupeMarkers(store)
    longest = 0.0
    started = last = time.perf_counter()

    async def watch() -> None:
        nonlocal longest, last
        while not rebuilt.built:
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
            await asyncio.sleep(0)

    await asyncio.gather(rebuilt.prepare(), watch())
    build = time.perf_counter() - started
    slices, more, expired = [], True, 0
    started = time.perf_counter()
    while more:
        at = time.perf_counter()
        gone, more = rebuilt.expire(datetime.now(UTC) + timedelta(days=2), {0})
        slices.append(time.perf_counter() - at)
        expired += gone
    if expired != markers:
        raise WrongTotals(f"{expired} markers expired of {markers}")
    return {
        "markers_in_process": markers,
        "marker_index_build_seconds": round(build, 2),
        "marker_index_longest_slice_ms": round(longest * 1000, 1),
        "marker_expiry_seconds": round(time.perf_counter() - started, 2),
        "marker_expiry_longest_slice_ms": round(max(slices) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=500_000)
    parser.add_argument("--store", choices=["rocksdb", "memory"], default="rocksdb")
    parser.add_argument("--close", action="store_true")
    parser.add_argument("--markers", type=int, default=1_000_000, help="the in-process part")
    parser.add_argument("--log", type=Path, help="keep the worker's log there")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy Chrome traces of the restart there, and of the first run's apply "
        "beside it (NAME.apply.json); read them with bench.stall_profile",
    )
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    found = asyncio.run(marker_slices(args.markers))
    if args.subscriptions:
        found |= asyncio.run(
            measure(base, args.subscriptions, args.store, args.close, args.log, args.profile)
        )
    report.print_table(["measure", "value"], [[k, v] for k, v in found.items()])
    report.write_record("aggregator_restart", machine, found)


if __name__ == "__main__":
    main()
