"""Throughput of aggregator workers on the real Kafka (started, or reused when running):
N events are produced to the events topic first, then `meterflow aggregator` processes of
one consumer group read them (one, or each count of `--workers` in turn, each a fresh group
reading the same topic from its beginning); the clock runs from every worker being ready
until every event is accounted for (applied or dropped as a duplicate, summed over their
Prometheus metrics). Also each run's CPU seconds (all its workers' processes): on a busy
shared machine events per CPU second move less than events per second.

    .venv/bin/python bench/aggregator_throughput.py [--events 200000] [--subscriptions 100]
        [--duplicates 0.05] [--batch-size 1000] [--pack 100] [--workers 1,2]
        [--compare-src /work/main/src] [--repeat 3] [--worker-env NAME=VALUE]
        [--profile worker.svg [--profile-native]]

`--compare-src` runs each measure a second time with the workers importing another source
tree (another commit's `src`), alternating which goes first, on the same pre-filled topic:
the ratio of the two medians is what a busy shared machine moves least. `--profile` samples
only the thread holding the GIL (py-spy `--gil`): where the worker's Python time goes.

Half the events are count_agg, half sum_agg; each `--pack` events are written as one
record per partition, as ingest writes a batch request. Prints a table and writes JSON to
bench/results/. Uses its own topics and Faust app ids, removed afterwards.

In the same run, a lean reference loop goes over the same record values in this process:
msgspec decodes each record, a set drops duplicate (subscription, transaction) pairs, and a
dict sums per (subscription, code) the count and the `gb` property (Decimal): the least
work that gives the right totals, without Kafka, durability or billing periods. The workers'
rate is reported as a share of it (median of 3 passes), which moves less with the machine's
load than either figure alone."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import random
import signal
import subprocess
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaProducer

from aggregator.sample_catalog import SampleCatalog
from bench import report
from bench.processes import (
    ServiceProcess,
    delete_app_topics,
    free_port,
    metrics,
    service_env,
)
from billing.events import wire_timestamp
from meterflow.event_records import packs
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics


class _Event(msgspec.Struct):
    transaction_id: str
    external_subscription_id: str
    code: str
    properties: dict[str, Any] = {}


def reference_loop(values: list[bytes]) -> float:
    """Events per second of the lean loop over the record values (see the docstring)."""
    decoder = msgspec.json.Decoder(_Event | list[_Event])
    started = time.perf_counter()
    seen: set[tuple[str, str]] = set()
    counts: dict[tuple[str, str], int] = {}
    sums: dict[tuple[str, str], Decimal] = {}
    events = 0
    for value in values:
        decoded = decoder.decode(value)
        for event in decoded if isinstance(decoded, list) else [decoded]:
            events += 1
            ident = (event.external_subscription_id, event.transaction_id)
            if ident in seen:
                continue
            seen.add(ident)
            key = (event.external_subscription_id, event.code)
            counts[key] = counts.get(key, 0) + 1
            if "gb" in event.properties:
                sums[key] = sums.get(key, Decimal(0)) + Decimal(event.properties["gb"])
    return events / (time.perf_counter() - started)


def sample_catalog(org: str, subscriptions: int) -> SampleCatalog:
    """The organization's catalog: `calls` (count_agg) and `gb` (sum_agg) on one plan, and
    that many subscriptions to it since 2020."""
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls", "gb"])
    for i in range(subscriptions):
        sample.subscription(
            f"s{i}", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z"
        )
    return sample


def event_records(
    org: str, args: argparse.Namespace, partitions: int, timestamp: str
) -> Iterator[tuple[int, bytes]]:
    """The events as ingest writes them, (partition, record value): each `--pack` events (a
    request) grouped into one record per partition, partitions as the default partitioner
    picks them for the subscriptions' keys; `--duplicates` of them repeat an earlier
    transaction id."""
    rng = random.Random(7)
    request: list[tuple[bytes, bytes]] = []
    for n in range(args.events):
        txn = f"t{rng.randrange(n)}" if n and rng.random() < args.duplicates else f"t{n}"
        sub = f"s{zlib.crc32(txn.encode()) % args.subscriptions}"
        gb = n % 2 == 0
        wire = {
            "organization_id": org,
            "transaction_id": txn,
            "external_subscription_id": sub,
            "code": "gb" if gb else "calls",
            "timestamp": timestamp,
            "properties": {"gb": "0.25"} if gb else {},
        }
        request.append((sub.encode(), orjson.dumps(wire)))
        if len(request) == args.pack or n == args.events - 1:
            yield from packs(request, partitions)
            request.clear()


async def prefill(
    settings: Settings, args: argparse.Namespace, org: str, values: list[bytes]
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    ts = wire_timestamp(datetime.now(UTC))  # as ingest writes it
    try:
        for record in sample_catalog(org, args.subscriptions).records:
            await producer.send(
                settings.topics.catalog,
                key=record.key,
                value=record.encode(),
                headers=record.headers,
            )
        pending = []
        for partition, value in event_records(org, args, settings.partitions, ts):
            values.append(value)
            pending.append(await producer.send(settings.topics.events, value, partition=partition))
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return int(args.events)


def done_events(ports: list[int]) -> float:
    """Events the workers accounted for (applied or dropped as a duplicate), summed over
    their Prometheus metrics."""
    done = 0.0
    for port in ports:
        for key, value in metrics(port).items():
            if key.startswith("meterflow_aggregator_events_total{") and (
                '"applied"' in key or '"duplicate"' in key
            ):
                done += value
    return done


def hot_path(env: dict[str, str]) -> str:
    """`compiled` when workers started with `env` run the compiled hot path
    (`aggregator.compiled`), else why not (a tree without it: `interpreted`)."""
    probe = "import aggregator.compiled as c; print(c.why_interpreted() or 'compiled')"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "interpreted"


def measure(
    settings: Settings, args: argparse.Namespace, sent: int, workers: int, source: str = ""
) -> dict[str, Any]:
    """Start `workers` aggregator processes of one new app (one consumer group) on the
    pre-filled topic; events per second from the moment all are ready until every event is
    accounted for (events counted before that moment are left out of the rate). `source`,
    when given, is the source tree the workers import (PYTHONPATH), to compare two commits
    in one run."""
    app_id = f"{settings.topics.prefix}aggregator-{workers}w-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as data_dir:
        procs: list[ServiceProcess] = []
        ports: list[tuple[int, int]] = []
        try:
            for n in range(workers):
                web_port, metrics_port = free_port(), free_port()
                env = service_env(
                    settings,
                    METERFLOW_AGGREGATOR_APP_ID=app_id,
                    METERFLOW_AGGREGATOR_PORT=str(web_port),
                    METERFLOW_AGGREGATOR_METRICS_PORT=str(metrics_port),
                    METERFLOW_AGGREGATOR_DATA_DIR=f"{data_dir}/{n}",
                    METERFLOW_AGGREGATOR_BATCH_SIZE=str(args.batch_size),
                    **dict(item.split("=", 1) for item in args.worker_env),
                    **({"PYTHONPATH": source} if source else {}),
                )
                procs.append(ServiceProcess("aggregator", env, Path(data_dir) / f"{n}.log"))
                running = hot_path(env)
                ports.append((web_port, metrics_port))
            launch = time.monotonic()
            for proc, (web_port, _) in zip(procs, ports, strict=True):
                asyncio.run(proc.wait_http(web_port, "/ready", timeout=120))
            profiler = None
            if args.profile and workers == 1 and not source:
                # py-spy samples the worker while it works through the topic; stopped with
                # SIGINT, it writes the profile (a flame graph for .svg, else collapsed).
                kind = "flamegraph" if args.profile.endswith(".svg") else "raw"
                spy = str(Path(sys.executable).with_name("py-spy"))
                pid = str(procs[0].proc.pid)
                native = ["--native"] if args.profile_native else []
                output = ["--pid", pid, "-o", args.profile, "-f", kind]
                profiler = subprocess.Popen([spy, "record", "--gil", *native, *output])
            t0 = time.monotonic()
            cpu0 = sum(proc.cpu_seconds() for proc in procs)
            metrics_ports = [m for _, m in ports]
            done_at_start = done = done_events(metrics_ports)
            while done < sent:
                for proc in procs:
                    if proc.proc.poll() is not None:
                        raise proc.failed("exited")
                time.sleep(0.2)
                done = done_events(metrics_ports)
            elapsed = time.monotonic() - t0
            cpu = sum(proc.cpu_seconds() for proc in procs) - cpu0
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            if sent - done_at_start < sent / 4:
                raise SystemExit(
                    f"{done_at_start:,.0f} of the {sent:,} events were counted before every "
                    f"worker was ready: this run measures too little; give more --events"
                )
            rate = (sent - done_at_start) / elapsed
            return {
                "workers": workers,
                "source": source or "this tree",
                "hot_path": running,
                "startup_seconds": round(t0 - launch, 2),
                "counted_before_all_ready": done_at_start,
                "processing_seconds": round(elapsed, 2),
                "events_per_second": round(rate, 1),
                "events_per_second_per_worker": round(rate / workers, 1),
                "workers_cpu_seconds": round(cpu, 2),
                "events_per_worker_cpu_second": round((sent - done_at_start) / cpu, 1),
                "load_average": report.load_average(),  # (1 min, as the run ended)
            }
        finally:
            for proc in procs:
                proc.stop()
            asyncio.run(delete_app_topics(settings, app_id))


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings.from_env()
    stack = LocalStack.from_settings(base)
    stack.start()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(stack.settings, topics=Topics(prefix=prefix))
    org = "bench-org"
    asyncio.run(ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions))
    started = time.monotonic()
    values: list[bytes] = []
    try:
        sent = asyncio.run(prefill(settings, args, org, values))
        prefill_s = time.monotonic() - started
        runs = []
        for repeat in range(args.repeat):
            for workers in args.workers:
                # Alternating which tree goes first, so neither always meets the warmer broker.
                trees = ["", args.compare_src] if args.compare_src else [""]
                for source in trees if repeat % 2 == 0 else trees[::-1]:
                    runs.append(measure(settings, args, sent, workers, source))
    finally:
        asyncio.run(delete_topics(settings.bootstrap_servers, settings.topics))
    reference = report.median(reference_loop(values) for _ in range(3))
    for found in runs:
        found["share_of_reference"] = round(found["events_per_second"] / reference, 4)
        single = [
            r["events_per_second"]
            for r in runs
            if r["workers"] == 1 and r["source"] == found["source"]
        ]
        if single:
            found["speedup_over_one_worker"] = round(
                found["events_per_second"] / report.median(single), 2
            )
    return {
        "machine": asyncio.run(report.machine_facts(settings)),
        "events": sent,
        "subscriptions": args.subscriptions,
        "duplicate_share": args.duplicates,
        "partitions": settings.partitions,
        "batch_size": args.batch_size,
        "events_per_request": args.pack,
        "prefill_seconds": round(prefill_s, 2),
        "reference_loop_events_per_second": round(reference, 1),
        "runs": runs,
        "medians": _medians(runs),
    }


def _medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (source tree, workers): the median events/s per worker and CPU second, and, with
    `--compare-src`, this tree's median over the other's."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for found in runs:
        groups.setdefault((found["source"], found["workers"]), []).append(found)
    rows: list[dict[str, Any]] = [
        {
            "source": source,
            "workers": workers,
            "runs": len(found),
            "events_per_second_per_worker": report.median(
                r["events_per_second_per_worker"] for r in found
            ),
            "events_per_worker_cpu_second": report.median(
                r["events_per_worker_cpu_second"] for r in found
            ),
        }
        for (source, workers), found in groups.items()
    ]
    for row in rows:
        other = [r for r in rows if r["workers"] == row["workers"] and r is not row]
        if other and row["source"] == "this tree":
            row["ratio_to_other_tree"] = round(
                row["events_per_second_per_worker"] / other[0]["events_per_second_per_worker"], 3
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--pack",
        type=int,
        default=100,
        help="events per simulated batch request, written as one record per partition "
        "(1: one record per event)",
    )
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1],
        help="worker counts to measure in turn on the same pre-filled topic, e.g. 1,2 "
        "(each a fresh consumer group reading it from the beginning)",
    )
    parser.add_argument(
        "--compare-src",
        metavar="DIR",
        default="",
        help="also run the workers from this source tree (e.g. /work/main/src), alternating "
        "with this one on the same pre-filled topic, and report the ratio of the medians",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure each worker count this many times"
    )
    parser.add_argument(
        "--worker-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="an environment variable for the workers (repeatable), e.g. "
        "METERFLOW_AGGREGATOR_BATCH_WITHIN=0.05",
    )
    parser.add_argument(
        "--profile",
        metavar="SVG",
        help="write a py-spy profile of the one-worker run while it processes: a flame "
        "graph for a .svg name, collapsed stacks otherwise",
    )
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: sample C frames too (py-spy --native), which shows the "
        "compiled hot path's functions (aggregator.compiled) instead of their Python caller",
    )
    result = run(parser.parse_args())
    rows = [
        (key, value) for key, value in result.items() if key not in ("machine", "runs", "medians")
    ]
    report.print_table(["aggregator throughput (pre-filled topic)", "result"], rows)
    columns = [key for key in result["runs"][0] if key != "workers"]
    print()
    report.print_table(
        ["workers", *columns], [[r["workers"], *(r[c] for c in columns)] for r in result["runs"]]
    )
    print()
    medians = result["medians"]
    mcolumns = [
        "source",
        "workers",
        "runs",
        "events_per_second_per_worker",
        "events_per_worker_cpu_second",
        "ratio_to_other_tree",
    ]
    report.print_table(mcolumns, [[row.get(c, "") for c in mcolumns] for row in medians])
    report.write_record("aggregator_throughput", result["machine"], result, module=None)


if __name__ == "__main__":
    main()
