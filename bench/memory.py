"""Aggregator memory per open (subscription, charge, period) key and per dedupe marker:
one `meterflow aggregator` process, its resident memory (RSS) when ready and idle, then
again once it has applied K keys' events from a pre-filled topic.

    .venv/bin/python -m bench.memory [--subscriptions 10000,100000] [--marker-subscriptions 10000]
        [--events-per-key 10] [--runs 1]
    .venv/bin/python -m bench.memory --index   # the dedupe marker index alone, in-process

Each case starts a fresh worker on its own topics: the catalog (one plan with two charges,
count_agg and sum_agg, and S subscriptions) is on the catalog topic before it starts, so
its idle RSS includes the catalog. After `/ready` and a few quiet seconds the idle RSS is
read (median of 5 samples), then S x 2 x E events (E per key, each with its own
transaction id, all in the current period) are produced to the events topic; once its
Prometheus counter `meterflow_aggregator_events_total{outcome="applied"}` has counted them
all and the worker has been quiet for a few seconds, RSS is read again.

- bytes per open key = (loaded RSS - idle RSS) / (S x 2), from the cases with E = 1: one
  ledger per subscription holding both charges' totals for the period, plus one dedupe
  marker per event.
- bytes per dedupe marker = the extra growth of the case with E events per key over the
  E = 1 case with the same S, divided by the extra events: every event leaves a marker
  (its transaction id, kept until the period is closed and the late window has passed).
  That amortises the worker's bounded buffers, which fill as it writes (RocksDB's shared
  48 MB, the allocator's arenas), over the markers; with two E (`--events-per-key 10,30`)
  the slope between them too: the loaded RSS difference over the extra markers, what one
  more marker costs once those have filled.
- catalog bytes per subscription = the idle RSS difference between the two sizes of S,
  divided by the difference in subscriptions.

Check of every case: the applied counter equals the events sent (no duplicate, no dead
letter), the ledgers table holds S keys, and every subscription's current usage read back
from the worker shows E events per charge and E gigabytes. Prints a table and writes JSON
to bench/results/. Uses its own topics and Faust app id, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/memory.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import itertools
import tempfile
import time
import timeit
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from aggregator.markers import DedupeMarkers, NewMarker, marker_hash
from aggregator.sample_catalog import SampleCatalog
from aggregator.store import MemoryStore
from bench import report
from bench.processes import ServiceProcess, delete_app_topics, free_port, metrics, service_env
from bench.workload import (
    COUNT_CODE,
    SUM_CODE,
    SUM_FIELD,
    Usage,
    WrongTotals,
    current_period_start,
    produce_events,
    usage_from_meterflow,
)
from meterflow.catalog import CatalogRecord
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics

APPLIED = 'meterflow_aggregator_events_total{outcome="applied"}'
LEDGERS = 'meterflow_aggregator_table_keys{table="ledgers"}'
SETTLE_SECONDS = 5.0
APPLY_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class Case:
    subscriptions: int
    events_per_key: int

    @property
    def keys(self) -> int:
        return self.subscriptions * 2

    @property
    def events(self) -> int:
        return self.keys * self.events_per_key


def subscription(i: int) -> str:
    return f"mem-{i}"


def subscription_record(
    organization_id: str,
    i: int,
    terminated_at: str | None = None,
    *,
    subscription_at: datetime | None = None,
    billing_time: str = "calendar",
) -> CatalogRecord:
    """Subscription `i` to the bench plan, started in the current period (or at
    `subscription_at`)."""
    return SampleCatalog(organization_id).subscription(
        subscription(i),
        customer="bench-customer",
        plan_code="bench-plan",
        subscription_at=(subscription_at or current_period_start()).isoformat(),
        billing_time=billing_time,
        terminated_at=terminated_at,
    )


async def send_catalog(settings: Settings, records: Iterable[CatalogRecord]) -> None:
    """The records on the catalog topic, acknowledged 10,000 at a time."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        pending = []
        for record in records:
            pending.append(
                await producer.send(
                    settings.topics.catalog,
                    key=record.key,
                    value=record.encode(),
                    headers=record.headers,
                )
            )
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def bench_plan(
    organization_id: str, *, interval: str = "monthly", timezone: str | None = None
) -> SampleCatalog:
    """The benchmarks' organization (in `timezone`), customer, two metrics (count, sum of gb)
    and their plan."""
    sample = SampleCatalog(organization_id, organization_timezone=timezone)
    sample.organization()
    sample.customer("bench-customer")
    sample.metric(COUNT_CODE, "count_agg")
    sample.metric(SUM_CODE, "sum_agg", SUM_FIELD)
    sample.plan("bench-plan", [COUNT_CODE, SUM_CODE], interval=interval)
    return sample


async def produce_catalog(settings: Settings, organization_id: str, subscriptions: int) -> None:
    sample = bench_plan(organization_id)
    subscriptions_records = (subscription_record(organization_id, i) for i in range(subscriptions))
    await send_catalog(settings, [*sample.records, *subscriptions_records])


def case_events(case: Case, timestamp: float) -> Iterator[dict[str, Any]]:
    """E events per (subscription, charge); each sum_agg event adds 1 gigabyte. Rounds over
    the subscriptions, so every batch the worker takes touches many keys."""
    for j in range(case.events_per_key):
        for i in range(case.subscriptions):
            sub = subscription(i)
            for code in (COUNT_CODE, SUM_CODE):
                yield {
                    "transaction_id": f"{sub}-{code}-{j}",
                    "external_subscription_id": sub,
                    "code": code,
                    "timestamp": timestamp,
                    "properties": {SUM_FIELD: 1} if code == SUM_CODE else {},
                }


async def rss_median(worker: ServiceProcess, samples: int = 5, step: float = 0.5) -> int:
    found = []
    for _ in range(samples):
        found.append(worker.rss())
        await asyncio.sleep(step)
    return int(report.median(found))


async def check_usage(port: int, organization_id: str, case: Case) -> None:
    """Every subscription's current usage, read back from the worker (16 at a time)."""
    expected = Usage(case.events_per_key, case.events_per_key, Decimal(case.events_per_key))
    queue = iter(range(case.subscriptions))
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=16)

    async def reader(session: aiohttp.ClientSession) -> None:
        for i in queue:
            url = (
                f"http://127.0.0.1:{port}/current-usage/{subscription(i)}"
                f"?organization_id={organization_id}"
            )
            async with session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise WrongTotals(f"{url} answered {response.status}: {body[:200]!r}")
            expected.check("meterflow", subscription(i), usage_from_meterflow(orjson.loads(body)))

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(reader(session) for _ in range(16)))


def worker_env(
    settings: Settings, app_id: str, tmp: str, **overrides: str
) -> tuple[dict[str, str], int, int]:
    """One benchmarked aggregator's environment in the scratch directory `tmp`: its state
    there, its own app id and free ports (returned: the web view's, the metrics')."""
    port, metrics_port = free_port(), free_port()
    env = service_env(
        settings,
        METERFLOW_STATE_DIR=tmp,
        METERFLOW_AGGREGATOR_APP_ID=app_id,
        METERFLOW_AGGREGATOR_PORT=str(port),
        METERFLOW_AGGREGATOR_METRICS_PORT=str(metrics_port),
        METERFLOW_AGGREGATOR_DATA_DIR=str(Path(tmp) / "aggregator"),
        **overrides,
    )
    return env, port, metrics_port


async def measure(base: Settings, case: Case) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(base, topics=Topics(prefix=prefix))
    app_id = f"{prefix}aggregator"
    organization_id = str(uuid.uuid4())
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        await produce_catalog(settings, organization_id, case.subscriptions)
        with tempfile.TemporaryDirectory() as tmp:
            env, port, metrics_port = worker_env(settings, app_id, tmp)
            worker = ServiceProcess("aggregator", env, Path(tmp) / "aggregator.log")
            try:
                startup = await worker.wait_http(port, "/ready")
                await asyncio.sleep(SETTLE_SECONDS)
                idle = await rss_median(worker)
                stamp = datetime.now(UTC).timestamp() - 60
                started = time.monotonic()
                await produce_events(settings, organization_id, case_events(case, stamp))
                produced = time.monotonic() - started
                sample: dict[str, float] = {}
                while sample.get(APPLIED, 0.0) < case.events:
                    if worker.proc.poll() is not None:
                        raise worker.failed("exited while applying")
                    if time.monotonic() - started > APPLY_TIMEOUT:
                        raise worker.failed(f"applied {sample.get(APPLIED)} of {case.events}")
                    await asyncio.sleep(0.5)
                    sample = await asyncio.to_thread(metrics, metrics_port)
                applied_s = time.monotonic() - started
                # The table-size gauges are set by the worker's close timer (every 10 s).
                deadline = time.monotonic() + 60
                # RocksDB's key count is its estimate: a key rewritten while still in its
                # write buffer counts twice until compaction, so it may exceed S a little.
                while sample.get(LEDGERS, 0) < case.subscriptions and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    sample = await asyncio.to_thread(metrics, metrics_port)
                await asyncio.sleep(SETTLE_SECONDS)
                loaded = await rss_median(worker)
                sample = await asyncio.to_thread(metrics, metrics_port)
                outcomes = {
                    k: v
                    for k, v in sample.items()
                    if k.startswith("meterflow_aggregator_events_total{") and v
                }
                if outcomes != {APPLIED: float(case.events)}:
                    raise WrongTotals(f"aggregator outcomes {outcomes}, {case.events} sent")
                ledgers = sample.get(LEDGERS, 0)
                if ledgers < case.subscriptions:
                    raise WrongTotals(f"{ledgers} ledgers for {case.subscriptions} subscriptions")
                await check_usage(port, organization_id, case)
            finally:
                worker.stop()
    finally:
        await delete_app_topics(settings, app_id)
        await delete_topics(settings.bootstrap_servers, settings.topics)
    growth = loaded - idle
    return {
        "subscriptions": case.subscriptions,
        "events_per_key": case.events_per_key,
        "keys": case.keys,
        "events": case.events,
        "startup_seconds": round(startup, 1),
        "produce_seconds": round(produced, 1),
        "apply_seconds": round(applied_s, 1),
        "rss_idle_bytes": idle,
        "rss_loaded_bytes": loaded,
        "growth_bytes": growth,
        "bytes_per_key": round(growth / case.keys, 1),
        "bytes_per_subscription": round(growth / case.subscriptions, 1),
        "bytes_per_event": round(growth / case.events, 1),
        "marker_segments": sample.get('meterflow_aggregator_table_keys{table="markers"}'),
    }


def derive(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per case, then bytes per key, per marker and catalog bytes per subscription."""

    def med(subs: int, per_key: int, field: str) -> float:
        return report.median(
            r[field]
            for r in results
            if r["subscriptions"] == subs and r["events_per_key"] == per_key
        )

    cases = sorted({(r["subscriptions"], r["events_per_key"]) for r in results})
    found: dict[str, Any] = {}
    single = [s for s, e in cases if e == 1]
    if single:
        largest = max(single)
        found["bytes_per_key"] = med(largest, 1, "bytes_per_key")
        found["bytes_per_subscription"] = med(largest, 1, "bytes_per_subscription")
        found["bytes_per_key_at"] = largest
    if len(single) >= 2:
        low, high = min(single), max(single)
        found["catalog_bytes_per_subscription"] = (
            med(high, 1, "rss_idle_bytes") - med(low, 1, "rss_idle_bytes")
        ) / (high - low)
    for subs, per_key in cases:
        if per_key > 1 and subs in single:
            extra = med(subs, per_key, "growth_bytes") - med(subs, 1, "growth_bytes")
            found["bytes_per_marker"] = extra / (subs * 2 * (per_key - 1))
            found["bytes_per_marker_at"] = subs
    # The slope between the two largest marker cases of one S: what one more marker costs
    # once the worker's bounded buffers (RocksDB's 48 MB budget, the allocator's arenas, the
    # producer's buffers) have filled, which the amortised figure above divides by its
    # markers too.
    for subs in {s for s, _ in cases}:
        marked = sorted(e for s, e in cases if s == subs and e > 1)
        if len(marked) >= 2:
            low, high = marked[-2], marked[-1]
            extra = med(subs, high, "rss_loaded_bytes") - med(subs, low, "rss_loaded_bytes")
            found["bytes_per_marker_slope"] = extra / (subs * 2 * (high - low))
            found["bytes_per_marker_slope_between"] = subs * 2 * low, subs * 2 * high
    return found


def index_bytes(subscriptions: int, per_subscription: int) -> dict[str, float]:
    """In this process: the dedupe marker index (`aggregator.markers`) of `subscriptions` x
    `per_subscription` markers, written in batches of 1,000 as a worker writes them, then
    built again from the segments under tracemalloc: its bytes a marker, with and without
    the ledger-key strings (the catalog and the ledgers hold those too), and a lookup's
    time (half hits, half misses; the best of 7 rounds)."""
    store = MemoryStore(raw=True)
    writer = DedupeMarkers(store)
    made = (
        NewMarker(f"o\x1fs{s}", marker_hash(f"t{j}-{s}"), s % 4, j * subscriptions + s, 20_000)
        for j in range(per_subscription)
        for s in range(subscriptions)
    )
    while batch := list(itertools.islice(made, 1_000)):
        writer.write(batch)
    index = DedupeMarkers(store)
    tracemalloc.start()
    index.seen("", 0)  # built here
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = sum(sys.getsizeof(f"o\x1fs{s}") for s in range(subscriptions))
    probes = [
        (f"o\x1fs{s % subscriptions}", marker_hash(f"t0-{s % subscriptions}")) for s in range(5_000)
    ]
    probes += [(key, hashed ^ 1) for key, hashed in probes]
    seen = index.seen

    def look() -> None:
        for key, hashed in probes:
            seen(key, hashed)

    best = min(timeit.repeat(look, number=1, repeat=7))  # the least disturbed of 7 rounds
    markers = subscriptions * per_subscription
    return {
        "subscriptions": subscriptions,
        "markers_per_subscription": per_subscription,
        "index_bytes_per_marker": round(size / markers, 1),
        "without_key_strings": round((size - keys) / markers, 1),
        "lookup_ns": round(best / len(probes) * 1e9),
    }


INDEX_CASES = [(1_000_000, 1), (100_000, 2), (10_000, 20), (100, 2_000), (1, 1_000_000)]


def cases_for(
    subscriptions: list[int], marker_subscriptions: int, events_per_key: int | list[int]
) -> list[Case]:
    found = [Case(s, 1) for s in subscriptions]
    per_key = [events_per_key] if isinstance(events_per_key, int) else events_per_key
    if marker_subscriptions:
        found.extend(Case(marker_subscriptions, e) for e in per_key if e > 1)
    return found


async def run(base: Settings, cases: list[Case], runs: int = 1) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        for case in cases:
            results.append(await measure(base, case))
    return {"cases": results, "derived": derive(results)}


HEADERS = [
    "subscriptions",
    "events/key",
    "keys",
    "events",
    "idle RSS MB",
    "loaded RSS MB",
    "growth MB",
    "bytes/key",
    "bytes/subscription",
    "apply s",
]


def rows(results: list[dict[str, Any]]) -> list[list[object]]:
    mb = 2**20
    return [
        [
            r["subscriptions"],
            r["events_per_key"],
            r["keys"],
            r["events"],
            r["rss_idle_bytes"] / mb,
            r["rss_loaded_bytes"] / mb,
            r["growth_bytes"] / mb,
            r["bytes_per_key"],
            r["bytes_per_subscription"],
            r["apply_seconds"],
        ]
        for r in results
    ]


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=sizes, default=[10_000, 100_000])
    parser.add_argument("--marker-subscriptions", type=int, default=10_000)
    parser.add_argument(
        "--events-per-key", type=sizes, default=[10], help="two (10,30) give the slope too"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--index", action="store_true", help="the marker index alone")
    args = parser.parse_args()
    if args.index:
        index = [index_bytes(*case) for case in INDEX_CASES]
        report.print_table(list(index[0]), [list(r.values()) for r in index])
        report.write_record("memory-index", {}, {"cases": index}, module="memory")
        return
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    cases = cases_for(args.subscriptions, args.marker_subscriptions, args.events_per_key)
    found = asyncio.run(run(base, cases, args.runs))
    report.print_table(HEADERS, rows(found["cases"]))
    derived = found["derived"]
    print()
    report.print_table(
        ["derived (medians)", "bytes"],
        [[k, v] for k, v in derived.items() if not k.endswith("_at")],
    )
    report.write_record("memory", machine, found)


if __name__ == "__main__":
    main()
