"""The benchmark suite: meterflow against the Postgres-per-event baseline on the same
machine, Kafka and Postgres, several runs of each measure, medians and ratios in one table.

    .venv/bin/python -m bench.run [--quick] [--huge] [--runs N] [--period-sizes N,N]
        [--stored-events N] [--freshness-rate N] [--memory-subscriptions N,N]

Measures: ingest, aggregation, current usage, invoicing, freshness under a steady load
(bench/freshness.py, both sides) and the aggregator's memory per open key and per dedupe
marker (bench/memory.py, meterflow only, one run unless --runs is given).

Starts the embedded Kafka and Postgres (or reuses them while running). Each measure uses
its own topics, Faust app id and database schemas, removed afterwards. Every run checks
that the totals each side reports equal what was sent, and stops with WrongTotals if not.
Prints the table and writes everything, with the machine's facts, to
bench/results/suite-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import baseline, freshness, memory, report
from bench.workload import (
    CHARGES,
    COUNT_CODE,
    SUBSCRIPTION_AT,
    SUM_CODE,
    SUM_FIELD,
    Dataset,
    LoadResult,
    Usage,
    WrongTotals,
    batch_bodies,
    current_period,
    post_batches,
    produce_events,
    stored_events,
    usage_from_baseline,
    usage_from_meterflow,
)
from gateway.organizations import create_organization
from gateway.service import IngestServer
from meterflow.db import connect, migrate
from meterflow.event_records import decode_record
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics
from web.settings import IngestSettings

log = logging.getLogger("bench")


@dataclass(frozen=True, slots=True)
class Sizes:
    runs: int
    ingest_events: int
    batch: int
    concurrency: int
    tiers: dict[str, int]
    latency_requests: int
    invoices: int
    stored_events: int = 0
    freshness_rate: float = 2000.0
    freshness_seconds: float = 30.0
    memory_subscriptions: tuple[int, ...] = (10_000, 100_000)
    memory_marker_subscriptions: int = 10_000
    memory_runs: int = 1  # RSS moves little between runs, and a run takes minutes

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sizes:
        if args.quick:
            sizes = cls(
                2, 5_000, 100, 8, {tier_name(1_000): 1_000, tier_name(10_000): 10_000}, 50, 500
            )
            sizes = replace(
                sizes,
                freshness_seconds=10.0,
                memory_subscriptions=(1_000, 10_000),
                memory_marker_subscriptions=1_000,
            )
        else:
            sizes = cls(
                3, 50_000, 100, 8, {tier_name(1_000): 1_000, tier_name(100_000): 100_000}, 200, 5000
            )
        if args.period_sizes:
            sizes = replace(sizes, tiers={tier_name(n): n for n in args.period_sizes})
        if args.huge:
            sizes = replace(sizes, tiers={**sizes.tiers, tier_name(10_000_000): 10_000_000})
        if args.runs:
            sizes = replace(sizes, runs=args.runs, memory_runs=args.runs)
        if args.stored_events:
            sizes = replace(sizes, stored_events=args.stored_events)
        if args.freshness_rate:
            sizes = replace(sizes, freshness_rate=args.freshness_rate)
        if args.memory_subscriptions:
            sizes = replace(sizes, memory_subscriptions=tuple(args.memory_subscriptions))
        return sizes


def tier_name(events: int) -> str:
    """The subscription whose period holds `events` events: usage-1k, usage-100k, usage-10m."""
    for size, suffix in ((1_000_000, "m"), (1_000, "k")):
        if events >= size and events % size == 0:
            return f"usage-{events // size}{suffix}"
    return f"usage-{events}"


def period_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


@dataclass(slots=True)
class Measure:
    """One row of the table: per-run values of each side, and which way is better."""

    name: str
    unit: str
    higher_is_better: bool
    meterflow: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    def row(self) -> list[object]:
        mf, bl = report.median(self.meterflow), report.median(self.baseline)
        advantage = report.ratio(mf, bl) if self.higher_is_better else report.ratio(bl, mf)
        if advantage != advantage:  # NaN: one side was not measured
            shown = "-"
        else:
            shown = f"{advantage:.2f}x" if advantage >= 0.1 else f"{advantage:.2g}x"
        return [self.name, self.unit, mf, bl, shown, max(len(self.meterflow), len(self.baseline))]


def isolated(base: Settings) -> Settings:
    """The stack's settings with topics and a meterflow schema nobody else uses."""
    run_id = uuid.uuid4().hex[:8]
    return replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")


async def drop_schema(settings: Settings, schema: str) -> None:
    conn = await connect(settings.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def topic_usage(settings: Settings, topic: str) -> Usage:
    """Every record of a topic read back from its beginning, counted by code, with the
    summed gigabytes (what meterflow holds after ingest, before any aggregation)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    calls = storage = 0
    gigabytes = Decimal(0)
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                for message in messages:
                    for wire in decode_record(message.value):  # one event, or a pack of them
                        if wire["code"] == SUM_CODE:
                            storage += 1
                            gigabytes += Decimal(str(wire["properties"][SUM_FIELD]))
                        elif wire["code"] == COUNT_CODE:
                            calls += 1
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return Usage(calls, storage, gigabytes)


def sent_usage(bodies: list[bytes], warmup: list[bytes], sizes: Sizes) -> Usage:
    """What the ingest measure sends: both body lists number their events from 0."""
    parts = [
        Usage.expected(len(bodies) * sizes.batch),
        Usage.expected(len(warmup) * sizes.batch),
    ]
    return Usage(
        sum(u.calls for u in parts),
        sum(u.storage_events for u in parts),
        sum((u.gigabytes for u in parts), Decimal(0)),
    )


def latency_ms(result: LoadResult) -> tuple[float, float]:
    return report.p50(result.latencies) * 1000, report.p99(result.latencies) * 1000


def check_load(side: str, result: LoadResult, batches: int) -> None:
    if result.errors or result.accepted_batches != batches:
        raise WrongTotals(
            f"{side}: {result.accepted_batches} of {batches} batches accepted; "
            f"first errors: {result.errors[:3]}"
        )


# -- (1) ingest: HTTP batch endpoint to durable storage -----------------------------------


async def ingest_meterflow(
    base: Settings, bodies: list[bytes], warmup: list[bytes], sizes: Sizes
) -> LoadResult:
    """Batches through meterflow's own ingest app to Kafka (acks=all, idempotent producer)."""
    settings = isolated(base)
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        if sizes.stored_events:
            await produce_events(settings, str(uuid.uuid4()), stored_events(sizes.stored_events))
        _, key = await create_organization(settings, "bench")
        config = IngestSettings(host="127.0.0.1", port=0, metrics_port=0)
        async with IngestServer(settings, config) as server:
            url = server.url + "/api/v1/events/batch"
            check_load("meterflow warm-up", await post_batches(url, key, warmup, 2), len(warmup))
            result = await post_batches(url, key, bodies, sizes.concurrency)
        check_load("meterflow ingest", result, len(bodies))
        stored = await topic_usage(settings, settings.topics.events)
        sent_usage(bodies, warmup, sizes).check("meterflow ingest", "all", stored)
        return result
    finally:
        await delete_topics(settings.bootstrap_servers, settings.topics)
        await drop_schema(settings, settings.db_schema)


async def ingest_baseline(
    base: Settings, bodies: list[bytes], warmup: list[bytes], sizes: Sizes
) -> LoadResult:
    """The same bodies to the baseline endpoint: one INSERT per batch, answered after commit."""
    schema = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    await baseline.create_schema(base.dsn, schema)
    try:
        organization_id, key = str(uuid.uuid4()), uuid.uuid4().hex
        conn = await connect(base.dsn, schema=schema)
        try:
            if sizes.stored_events:
                await copy_rows(conn, str(uuid.uuid4()), stored_events(sizes.stored_events))
            await baseline.add_api_key(conn, key, organization_id)
            server = baseline.BaselineServer(
                base.dsn, schema, CHARGES, current_period(datetime.now(UTC))
            )
            async with server:
                url = server.url + "/api/v1/events/batch"
                check_load("baseline warm-up", await post_batches(url, key, warmup, 2), len(warmup))
                result = await post_batches(url, key, bodies, sizes.concurrency)
            check_load("baseline ingest", result, len(bodies))
            total, stored_sum, gigabytes = await baseline.stored_totals(
                conn, organization_id, SUM_CODE, SUM_FIELD
            )
        finally:
            await conn.close()
        stored = Usage(total - stored_sum, stored_sum, gigabytes)
        sent_usage(bodies, warmup, sizes).check("baseline ingest", "all", stored)
        return result
    finally:
        await baseline.drop_schema(base.dsn, schema)


# -- (2) and (3): aggregation, then current usage as a period's events grow ---------------


async def timed_gets(
    session: aiohttp.ClientSession, url: str, requests: int
) -> tuple[list[float], dict[str, Any]]:
    """`requests` sequential GETs (one warm-up first); their latencies and the last answer."""
    latencies: list[float] = []
    body: dict[str, Any] = {}
    for i in range(requests + 1):
        started = time.perf_counter()
        async with session.get(url) as response:
            raw = await response.read()
            if response.status != 200:
                raise WrongTotals(f"GET {url} answered {response.status}: {raw[:300]!r}")
        if i:
            latencies.append(time.perf_counter() - started)
        body = orjson.loads(raw)
    return latencies, body


async def prefill(settings: Settings, organization_id: str, dataset: Dataset) -> None:
    """The catalog and the dataset's events on the events topic (not timed)."""
    sample = memory.bench_plan(organization_id)
    for subscription in dataset.tiers:
        sample.subscription(
            subscription,
            customer="bench-customer",
            plan_code="bench-plan",
            subscription_at=SUBSCRIPTION_AT.isoformat(),
        )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for record in sample.records:
            await producer.send(settings.topics.catalog, key=record.key, value=record.encode())
        await producer.flush()
    finally:
        await producer.stop()
    await produce_events(settings, organization_id, dataset.events())


class AggregatorWorker:
    """One `meterflow aggregator` process on free ports with an app id of its own."""

    def __init__(self, settings: Settings, app_id: str, data_dir: Path) -> None:
        from bench.processes import free_port

        self.settings = settings
        self.app_id = app_id
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = data_dir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERFLOW_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
                "METERFLOW_PARTITIONS": str(settings.partitions),
                "METERFLOW_AGGREGATOR_APP_ID": app_id,
                "METERFLOW_AGGREGATOR_PORT": str(self.port),
                "METERFLOW_AGGREGATOR_METRICS_PORT": str(self.metrics_port),
                "METERFLOW_AGGREGATOR_DATA_DIR": str(data_dir),
                "METERFLOW_LOG_LEVEL": "WARNING",
            }
        )
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meterflow.cli", "aggregator"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def failed(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return RuntimeError(f"aggregator worker {what}:\n{tail}")

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.failed(f"exited with {self.proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise self.failed(f"not ready after {timeout}s")

    async def accounted(self, session: aiohttp.ClientSession) -> float:
        """Events applied or dropped as duplicates so far (its Prometheus counters)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            async with session.get(url) as response:
                text = await response.text()
        except (aiohttp.ClientError, OSError):
            return 0.0
        total = 0.0
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample.startswith("meterflow_aggregator_events_total{") and (
                '"applied"' in sample or '"duplicate"' in sample
            ):
                total += float(value)
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass(slots=True)
class UsageRun:
    """One run of one side: aggregation throughput, and current-usage latencies per tier."""

    events_per_second: float
    latencies: dict[str, list[float]]


async def aggregate_meterflow(
    settings: Settings, organization_id: str, dataset: Dataset, run: int, sizes: Sizes
) -> UsageRun:
    """A fresh worker reads the pre-filled topic; the clock runs from the worker being ready
    until every event is accounted for (as in bench/aggregator_throughput.py)."""
    from bench.processes import delete_app_topics

    app_id = f"{settings.topics.prefix}aggregator-{run}"
    with tempfile.TemporaryDirectory() as data_dir:
        worker = AggregatorWorker(settings, app_id, Path(data_dir))
        try:
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await worker.wait_ready(session)
                started = time.perf_counter()
                while await worker.accounted(session) < dataset.total:
                    if worker.proc.poll() is not None:
                        raise worker.failed("exited while aggregating")
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                latencies = {}
                for subscription, expected in dataset.expected().items():
                    url = (
                        f"{worker.url}/current-usage/{subscription}"
                        f"?organization_id={organization_id}"
                    )
                    found, body = await timed_gets(session, url, sizes.latency_requests)
                    expected.check("meterflow", subscription, usage_from_meterflow(body))
                    latencies[subscription] = found
        finally:
            worker.stop()
            await delete_app_topics(settings, app_id)
    return UsageRun(dataset.total / elapsed, latencies)


async def load_baseline(
    base: Settings, schema: str, organization_id: str, dataset: Dataset
) -> None:
    """The same events as rows (COPY, not timed), then ANALYZE as a database would have."""
    await baseline.create_schema(base.dsn, schema)
    conn = await connect(base.dsn, schema=schema)
    try:
        await copy_rows(conn, organization_id, dataset.events())
    finally:
        await conn.close()


async def copy_rows(
    conn: asyncpg.Connection, organization_id: str, events: Iterable[dict[str, Any]]
) -> None:
    """Events into the baseline's table with COPY, then ANALYZE (not timed)."""
    chunk: list[dict[str, Any]] = []
    for wire in events:
        chunk.append(wire)
        if len(chunk) >= 50_000:
            await baseline.copy_events(conn, organization_id, chunk)
            chunk = []
    if chunk:
        await baseline.copy_events(conn, organization_id, chunk)
    await conn.execute("ANALYZE events")


async def aggregate_baseline(
    base: Settings, schema: str, organization_id: str, key: str, dataset: Dataset, sizes: Sizes
) -> UsageRun:
    """Read-time SQL: every subscription's usage of the period in one grouped query (what a
    billing run reads), then per-subscription current usage through the HTTP endpoint."""
    period = current_period(datetime.now(UTC))
    conn = await connect(base.dsn, schema=schema)
    try:
        started = time.perf_counter()
        totals = await baseline.usage_of_all(conn, organization_id, *period, SUM_FIELD)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    for subscription, expected in dataset.expected().items():
        calls = totals.get((subscription, COUNT_CODE), (0, Decimal(0)))
        storage = totals.get((subscription, SUM_CODE), (0, Decimal(0)))
        expected.check(
            "baseline (all subscriptions)",
            subscription,
            Usage(calls[0], storage[0], storage[1]),
        )
    latencies = {}
    async with baseline.BaselineServer(base.dsn, schema, CHARGES, period) as server:
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for subscription, expected in dataset.expected().items():
                url = f"{server.url}/current-usage/{subscription}"
                found, body = await timed_gets(session, url, sizes.latency_requests)
                expected.check("baseline", subscription, usage_from_baseline(body))
                latencies[subscription] = found
    return UsageRun(dataset.total / elapsed, latencies)


# -- the suite ----------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def alternate(
    what: str,
    runs: int,
    meterflow: Callable[[int], Awaitable[Any]],
    baseline_side: Callable[[int], Awaitable[Any]],
) -> tuple[list[Any], list[Any]]:
    """Run both sides `runs` times, alternating which goes first so neither always gets the
    quieter moment of a shared machine."""
    mf: list[Any] = []
    bl: list[Any] = []
    for run in range(runs):
        order = [("meterflow", meterflow, mf), ("baseline", baseline_side, bl)]
        for side, measure, results in order if run % 2 == 0 else reversed(order):
            started = time.monotonic()
            results.append(await measure(run))
            progress(f"{what}: {side} run {run + 1}/{runs} took {time.monotonic() - started:.1f}s")
    return mf, bl


async def suite(base: Settings, sizes: Sizes, measures: dict[str, Measure]) -> dict[str, Any]:
    raw: dict[str, Any] = {}

    # (1) ingest
    progress(f"ingest: {sizes.ingest_events:,} events, {sizes.runs} runs per side")
    bodies = batch_bodies("bench", sizes.ingest_events, sizes.batch)
    warmup = batch_bodies("warmup", 10 * sizes.batch, sizes.batch)
    mf_ingest, bl_ingest = await alternate(
        "ingest",
        sizes.runs,
        lambda _: ingest_meterflow(base, bodies, warmup, sizes),
        lambda _: ingest_baseline(base, bodies, warmup, sizes),
    )
    throughput = measures["ingest"]
    throughput.meterflow = [sizes.ingest_events / r.seconds for r in mf_ingest]
    throughput.baseline = [sizes.ingest_events / r.seconds for r in bl_ingest]
    p99 = measures["ingest_p99"]
    p99.meterflow = [latency_ms(r)[1] for r in mf_ingest]
    p99.baseline = [latency_ms(r)[1] for r in bl_ingest]
    raw["ingest"] = {
        side: [
            {"seconds": r.seconds, "p50_ms": latency_ms(r)[0], "p99_ms": latency_ms(r)[1]}
            for r in runs
        ]
        for side, runs in (("meterflow", mf_ingest), ("baseline", bl_ingest))
    }
    progress(f"ingest done: {throughput.row()}")

    # (2) aggregation and (3) current usage
    dataset = Dataset(dict(sizes.tiers))
    settings = isolated(base)
    organization_id, key = str(uuid.uuid4()), uuid.uuid4().hex
    schema = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    progress(f"aggregation: pre-filling {dataset.total:,} events ({dataset.tiers})")
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        await prefill(settings, organization_id, dataset)
        await load_baseline(base, schema, organization_id, dataset)
        conn = await connect(base.dsn, schema=schema)
        try:
            await baseline.add_api_key(conn, key, organization_id)
        finally:
            await conn.close()
        progress("aggregation: pre-filled")
        mf_usage, bl_usage = await alternate(
            "aggregation and current usage",
            sizes.runs,
            lambda run: aggregate_meterflow(settings, organization_id, dataset, run, sizes),
            lambda _: aggregate_baseline(base, schema, organization_id, key, dataset, sizes),
        )
    finally:
        await delete_topics(settings.bootstrap_servers, settings.topics)
        await baseline.drop_schema(base.dsn, schema)
    aggregation = measures["aggregation"]
    aggregation.meterflow = [r.events_per_second for r in mf_usage]
    aggregation.baseline = [r.events_per_second for r in bl_usage]
    for subscription, count in dataset.tiers.items():
        for q, name in ((50, "p50"), (99, "p99")):
            measure = measures.setdefault(
                f"usage_{name}_{subscription}",
                Measure(f"current usage {name}, {count:,} events in period", "ms", False),
            )
            measure.meterflow = [
                report.percentile(r.latencies[subscription], q) * 1000 for r in mf_usage
            ]
            measure.baseline = [
                report.percentile(r.latencies[subscription], q) * 1000 for r in bl_usage
            ]
    raw["aggregation"] = {"events": dataset.total, "tiers": dataset.tiers}
    progress(f"aggregation done: {aggregation.row()}")

    # (4) invoicing (meterflow only: the baseline's invoicing is not modelled)
    try:
        from bench import invoicer_throughput
    except ImportError:
        progress("invoicing skipped: bench/invoicer_throughput.py is not there")
    else:
        progress(f"invoicing: {sizes.invoices:,} closed periods, {sizes.runs} runs")
        invoicing = measures.setdefault(
            "invoicing", Measure("invoicing (closed periods to invoices)", "invoices/s", True)
        )
        for _ in range(sizes.runs):
            result = await invoicer_throughput.run(sizes.invoices, min(1000, sizes.invoices))
            if result["invoices"] != sizes.invoices:
                raise WrongTotals(f"invoicer: {result['invoices']} of {sizes.invoices} invoices")
            invoicing.meterflow.append(float(result["invoices_per_second"]))
        progress(f"invoicing done: {invoicing.row()}")

    # (5) freshness under a steady load, and (6) aggregator memory per key (meterflow only)
    load = freshness.Load(
        rate=sizes.freshness_rate,
        seconds=sizes.freshness_seconds,
        warmup=3.0,
        probe_interval=0.075,
        subscriptions=50,
    )
    progress(
        f"freshness: {load.rate:,.0f} events/s for {load.seconds:.0f}s, {sizes.runs} runs per side"
    )
    fresh = []
    for run in range(sizes.runs):
        sides = ("meterflow", "baseline") if run % 2 == 0 else ("baseline", "meterflow")
        fresh += await freshness.run(base, load, sides=sides)
        progress(f"freshness run {run + 1}/{sizes.runs} done")
    for name, key in (("freshness_p50", "p50_ms"), ("freshness_p99", "p99_ms")):
        measures[name].meterflow = [r[key] for r in fresh if r["side"] == "meterflow"]
        measures[name].baseline = [r[key] for r in fresh if r["side"] == "baseline"]
    raw["freshness"] = [{k: v for k, v in r.items() if k != "delays_ms"} for r in fresh]

    cases = memory.cases_for(
        list(sizes.memory_subscriptions), sizes.memory_marker_subscriptions, events_per_key=10
    )
    shown = [(c.subscriptions, c.events_per_key) for c in cases]
    progress(f"memory: (subscriptions, events per key) {shown}, {sizes.memory_runs} run(s)")
    raw["memory"] = []
    for _ in range(sizes.memory_runs):
        found = await memory.run(base, cases)
        raw["memory"].append(found)
        for name, key in (
            ("memory_key", "bytes_per_key"),
            ("memory_marker", "bytes_per_marker"),
            ("memory_catalog", "catalog_bytes_per_subscription"),
        ):
            if key in found["derived"]:
                measures[name].meterflow.append(found["derived"][key])
    progress(f"memory done: {measures['memory_key'].row()}")
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 runs (~2 min)")
    parser.add_argument("--huge", action="store_true", help="also a period of 10M events")
    parser.add_argument("--runs", type=int, default=0, help="runs per measure and side")
    parser.add_argument(
        "--stored-events",
        type=int,
        default=0,
        metavar="N",
        help="ingest into a topic and a table already holding N other events (default 0)",
    )
    parser.add_argument(
        "--period-sizes",
        type=period_sizes,
        default=None,
        metavar="N,N,...",
        help="events in the period of each measured subscription (default 1000,100000)",
    )
    parser.add_argument(
        "--freshness-rate",
        type=float,
        default=0.0,
        metavar="N",
        help="background events/s while freshness is probed (default 2000)",
    )
    parser.add_argument(
        "--memory-subscriptions",
        type=period_sizes,
        default=None,
        metavar="N,N",
        help="subscriptions (x 2 charges) of the aggregator memory cases (default 10000,100000)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    sizes = Sizes.from_args(args)
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    measures = {
        "ingest": Measure(
            f"ingest, HTTP batches of {sizes.batch} x {sizes.concurrency} clients"
            + (f", {sizes.stored_events:,} events stored" if sizes.stored_events else ""),
            "events/s",
            True,
        ),
        "ingest_p99": Measure("ingest batch latency p99", "ms", False),
        "aggregation": Measure(
            "aggregation: fold once (1 worker) vs one SQL pass", "events/s", True
        ),
        "freshness_p50": Measure(
            f"freshness p50: event 200 to visible, {sizes.freshness_rate:,.0f} events/s load",
            "ms",
            False,
        ),
        "freshness_p99": Measure(
            f"freshness p99: event 200 to visible, {sizes.freshness_rate:,.0f} events/s load",
            "ms",
            False,
        ),
        "memory_key": Measure(
            f"aggregator memory per open key, {max(sizes.memory_subscriptions) * 2:,} keys",
            "bytes",
            False,
        ),
        "memory_marker": Measure("aggregator memory per dedupe marker", "bytes", False),
        "memory_catalog": Measure("aggregator catalog memory per subscription", "bytes", False),
    }
    started = time.monotonic()
    raw = asyncio.run(suite(base, sizes, measures))
    headers = ["measure", "unit", "meterflow", "baseline", "advantage", "runs"]
    rows = [m.row() for m in measures.values() if m.meterflow or m.baseline]
    print()
    report.print_table(headers, rows)
    path = report.write_json(
        "suite",
        {
            "benchmark": "suite",
            "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "load_average_at_end": report.load_average(),
            "seconds": round(time.monotonic() - started, 1),
            "sizes": {
                "runs": sizes.runs,
                "ingest_events": sizes.ingest_events,
                "batch": sizes.batch,
                "concurrency": sizes.concurrency,
                "tiers": sizes.tiers,
                "latency_requests": sizes.latency_requests,
                "invoices": sizes.invoices,
                "stored_events": sizes.stored_events,
                "freshness_rate": sizes.freshness_rate,
                "freshness_seconds": sizes.freshness_seconds,
                "memory_subscriptions": sizes.memory_subscriptions,
                "memory_marker_subscriptions": sizes.memory_marker_subscriptions,
                "memory_runs": sizes.memory_runs,
            },
            "measures": {
                key: {
                    "name": m.name,
                    "unit": m.unit,
                    "higher_is_better": m.higher_is_better,
                    "meterflow": m.meterflow,
                    "baseline": m.baseline,
                    "meterflow_median": report.median(m.meterflow),
                    "baseline_median": report.median(m.baseline),
                }
                for key, m in measures.items()
            },
            "table": {"headers": headers, "rows": rows},
            "raw": raw,
        },
    )
    print(
        f"\nmedians of {sizes.runs} runs; advantage = meterflow/baseline for rates, "
        f"baseline/meterflow for latencies. Machine: {machine['cpus']} cores, load "
        f"{machine['load_average_at_start'][0]} at start, {report.load_average()} at end. "
        f"JSON: {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
