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
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bench import baseline, freshness, memory, report, steady_load
from bench.processes import isolated
from bench.suite_ingest import IngestLoad, ingest_baseline, ingest_meterflow, latency_ms
from bench.suite_usage import aggregate_baseline, aggregate_meterflow, load_baseline, prefill
from bench.workload import Dataset, WrongTotals, batch_bodies
from meterflow.db import connect
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics


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
    sent = IngestLoad(
        bodies=batch_bodies("bench", sizes.ingest_events, sizes.batch),
        warmup=batch_bodies("warmup", 10 * sizes.batch, sizes.batch),
        batch=sizes.batch,
        concurrency=sizes.concurrency,
        stored_events=sizes.stored_events,
    )
    mf_ingest, bl_ingest = await alternate(
        "ingest",
        sizes.runs,
        lambda _: ingest_meterflow(base, sent),
        lambda _: ingest_baseline(base, sent),
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
            lambda run: aggregate_meterflow(
                settings, organization_id, dataset, run, sizes.latency_requests
            ),
            lambda _: aggregate_baseline(
                base, schema, organization_id, key, dataset, sizes.latency_requests
            ),
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
    load = steady_load.Load(
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
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 runs (~3 min)")
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
