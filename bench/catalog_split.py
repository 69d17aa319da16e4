"""The catalog a worker holds when several share the events partitions: each keeps the
subscriptions of its own partitions only (`aggregator.catalog_view`), so W workers should
hold 1/W of them each, in subscriptions and in resident memory; and with
`--events-per-key E`, the open keys each holds once the events come.

    .venv/bin/python -m bench.catalog_split [--subscriptions 20000,200000] [--workers 1,2]
        [--events-per-key 1]

For each number of subscriptions S and of workers W: a catalog of S subscriptions (the
bench plan, `bench.memory`) on fresh topics, then W `meterflow aggregator` processes of one
app (one Faust group), no events. Once every worker is ready and their
`meterflow_aggregator_catalog_subscriptions` gauges add up to S (each worker's view after
the rebalance that gave it its partitions), and a few quiet seconds: each worker's
partitions, subscriptions held, how long its last read of the catalog took (`read_seconds`,
its `meterflow_aggregator_catalog_read_seconds`: after a rebalance, the read for its new
partitions), and idle resident memory (median of 5 samples). Derived, per
W: a worker's RSS growth between the two sizes divided by the growth of S, what the catalog
costs each worker per subscription of the whole catalog (with W = 2, about half of W = 1's
if the split works).

With E > 0, then E events per (subscription, charge) key (`bench.memory`'s events, 2 x S x E)
are produced; once the workers' applied counters add up to them and a few quiet seconds,
each worker's loaded RSS: its open keys are its applied events / E, and
(loaded - idle RSS) / its open keys what an open key costs it (with its E dedupe markers),
to hold against one worker's. Check: every subscription's usage, read through the first
worker (which forwards the others' partitions), shows E events per charge. Prints a table and
writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/catalog_split.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp

from bench import report
from bench.memory import (
    APPLIED,
    APPLY_TIMEOUT,
    SETTLE_SECONDS,
    Case,
    case_events,
    check_usage,
    produce_catalog,
    rss_median,
    sizes,
    worker_env,
)
from bench.processes import ServiceProcess, delete_app_topics, metrics
from bench.workload import produce_events
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics

HELD = "meterflow_aggregator_catalog_subscriptions"
READ = "meterflow_aggregator_catalog_read_seconds"  # (None from a tree before it)
SPLIT_TIMEOUT = 300.0


async def measure(
    base: Settings, subscriptions: int, workers: int, events_per_key: int = 0
) -> list[dict[str, Any]]:
    """W workers on a catalog of S subscriptions: each one's share, once they add up (and
    of the open keys, with E events per key)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(base, topics=Topics(prefix=prefix))
    app_id = f"{prefix}aggregator"
    organization_id = str(uuid.uuid4())
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    procs: list[tuple[ServiceProcess, int, int]] = []
    try:
        await produce_catalog(settings, organization_id, subscriptions)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                for w in range(workers):
                    home = Path(tmp) / str(w)
                    home.mkdir()
                    env, port, metrics_port = worker_env(settings, app_id, str(home))
                    procs.append(
                        (
                            ServiceProcess("aggregator", env, home / "aggregator.log"),
                            port,
                            metrics_port,
                        )
                    )
                started = time.monotonic()

                def held(samples: list[dict[str, float]]) -> list[float]:
                    return [s.get(HELD, 0.0) for s in samples if s.get(HELD)]

                await _until(
                    procs,
                    SPLIT_TIMEOUT,
                    lambda got: len(held(got)) == workers and sum(held(got)) == subscriptions,
                    lambda got: f"views {held(got)} never added up to {subscriptions}",
                )
                for proc, port, _ in procs:
                    await proc.wait_http(port, "/ready")
                split_seconds = time.monotonic() - started
                await asyncio.sleep(SETTLE_SECONDS)
                found = []
                for w, (proc, port, metrics_port) in enumerate(procs):
                    ready = await _ready(port)
                    sample = await asyncio.to_thread(metrics, metrics_port)
                    found.append(
                        {
                            "subscriptions": subscriptions,
                            "workers": workers,
                            "worker": w,
                            "partitions": ready["partitions"],
                            "held": int(sample[HELD]),
                            "read_seconds": sample.get(READ),
                            "rss_idle_bytes": await rss_median(proc),
                            "split_seconds": round(split_seconds, 1),
                        }
                    )
                if sum(r["held"] for r in found) != subscriptions:
                    raise RuntimeError(f"views {[r['held'] for r in found]} of {subscriptions}")
                if events_per_key:
                    case = Case(subscriptions, events_per_key)
                    await produce_events(
                        settings, organization_id, case_events(case, time.time() - 60)
                    )
                    for row, loaded in zip(found, await _loaded(procs, case), strict=True):
                        row.update(loaded)
                    await check_usage(procs[0][1], organization_id, case)
                return found
            finally:
                for proc, _, _ in procs:
                    proc.stop()
    finally:
        await delete_app_topics(settings, app_id)
        await delete_topics(settings.bootstrap_servers, settings.topics)


async def _until(
    procs: list[tuple[ServiceProcess, int, int]],
    timeout: float,
    done: Callable[[list[dict[str, float]]], bool],
    failure: Callable[[list[dict[str, float]]], str],
) -> list[dict[str, float]]:
    """The workers' metrics once `done` holds of them (read every 0.5 s); fails, saying
    `failure` of the last ones, when a worker exits or after `timeout` seconds."""
    started = time.monotonic()
    samples: list[dict[str, float]] = [{} for _ in procs]
    while not done(samples):
        for proc, _, _ in procs:
            if proc.proc.poll() is not None:
                raise proc.failed("exited")
        if time.monotonic() - started > timeout:
            raise procs[0][0].failed(failure(samples))
        await asyncio.sleep(0.5)
        samples = [await asyncio.to_thread(metrics, m) for _, _, m in procs]
    return samples


async def _loaded(procs: list[tuple[ServiceProcess, int, int]], case: Case) -> list[dict[str, Any]]:
    """Each worker's open keys and loaded RSS once the case's events are all applied."""

    def applied(samples: list[dict[str, float]]) -> list[float]:
        return [s.get(APPLIED, 0.0) for s in samples]

    samples = await _until(
        procs,
        APPLY_TIMEOUT,
        lambda got: sum(applied(got)) >= case.events,
        lambda got: f"applied {applied(got)} of {case.events}",
    )
    counts = applied(samples)
    if sum(counts) != case.events:
        raise RuntimeError(f"applied {counts}: more than the {case.events} events sent")
    await asyncio.sleep(SETTLE_SECONDS)
    return [
        {
            "events_per_key": case.events_per_key,
            "open_keys": int(count) // case.events_per_key,
            "rss_loaded_bytes": await rss_median(proc),
        }
        for (proc, _, _), count in zip(procs, counts, strict=True)
    ]


async def _ready(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/ready") as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


def derive(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per W: the mean over its workers of (RSS at the larger S - at the smaller) / growth of
    S; and per W and S (with events), of (loaded - idle RSS) / the worker's open keys."""
    rss = {(r["workers"], r["subscriptions"], r["worker"]): r["rss_idle_bytes"] for r in rows}
    found: dict[str, float] = {}
    for workers, subscriptions in sorted({(r["workers"], r["subscriptions"]) for r in rows}):
        loaded = [
            (r["rss_loaded_bytes"] - r["rss_idle_bytes"]) / r["open_keys"]
            for r in rows
            if (r["workers"], r["subscriptions"]) == (workers, subscriptions) and r.get("open_keys")
        ]
        if loaded:
            name = f"{workers} worker(s), {subscriptions} subscriptions: RSS per open key, each"
            found[name] = round(sum(loaded) / len(loaded), 1)
    for workers in sorted({r["workers"] for r in rows}):
        sizes_seen = [r["subscriptions"] for r in rows if r["workers"] == workers]
        low, high = min(sizes_seen), max(sizes_seen)
        if low == high:
            continue
        growth = sum(rss[workers, high, w] - rss[workers, low, w] for w in range(workers))
        found[f"{workers} worker(s): RSS per subscription of the catalog, each"] = round(
            growth / workers / (high - low), 1
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=sizes, default=[20_000, 200_000])
    parser.add_argument("--workers", type=sizes, default=[1, 2])
    parser.add_argument("--events-per-key", type=int, default=0, help="0: the catalog alone")
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    rows: list[dict[str, Any]] = []
    for workers in args.workers:
        for subscriptions in args.subscriptions:
            rows.extend(asyncio.run(measure(base, subscriptions, workers, args.events_per_key)))
    columns = [
        "subscriptions",
        "workers",
        "worker",
        "partitions",
        "held",
        "read_seconds",
        "split_seconds",
    ]
    report.print_table(
        [*columns, "idle RSS MB", "open keys", "loaded RSS MB"],
        [
            [
                *(r[c] for c in columns),
                r["rss_idle_bytes"] / 2**20,
                r.get("open_keys", "-"),
                r["rss_loaded_bytes"] / 2**20 if "rss_loaded_bytes" in r else "-",
            ]
            for r in rows
        ],
    )
    derived = derive(rows)
    print()
    report.print_table(["derived", "bytes"], [[k, v] for k, v in derived.items()])
    report.write_record("catalog_split", machine, {"rows": rows, "derived": derived})


if __name__ == "__main__":
    main()
