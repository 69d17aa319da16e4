"""Throughput of one aggregator worker on the real Kafka (started, or reused when running):
N events are produced to the events topic first, then one `meterflow aggregator` process
reads them; the clock runs from the worker being ready until every event is accounted for
(applied or dropped as a duplicate, read from its Prometheus metrics).

    .venv/bin/python bench/aggregator_throughput.py [--events 200000] [--subscriptions 100]
        [--duplicates 0.05] [--batch-size 1000] [--pack 100] [--profile worker.svg]

Half the events are count_agg, half sum_agg; each `--pack` events are written as one
record per partition, as ingest writes a batch request. Prints a table and writes JSON to
bench/results/. Uses its own topics and Faust app id, removed afterwards.

In the same run, a lean reference loop goes over the same record values in this process:
msgspec decodes each record, a set drops duplicate (subscription, transaction) pairs, and a
dict sums per (subscription, code) the count and the `gb` property (Decimal): the least
work that gives the right totals, without Kafka, durability or billing periods. The worker's
rate is reported as a share of it (median of 3 passes), which moves less with the machine's
load than either figure alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaProducer

from aggregator.sample_catalog import SampleCatalog
from bench import report
from bench.processes import delete_app_topics, free_port, metrics, ready
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


async def prefill(
    settings: Settings, args: argparse.Namespace, org: str, values: list[bytes]
) -> int:
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls", "gb"])
    for i in range(args.subscriptions):
        sample.subscription(
            f"s{i}", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z"
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    rng = random.Random(7)
    ts = wire_timestamp(datetime.now(UTC))  # as ingest writes it
    sent = 0
    try:
        for record in sample.records:
            await producer.send(settings.topics.catalog, key=record.key, value=record.encode())
        # Records as ingest writes them: each request's events grouped into one record per
        # partition (a pack), keyed partitions as the default partitioner picks them.
        pending = []
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
                "timestamp": ts,
                "properties": {"gb": "0.25"} if gb else {},
            }
            request.append((sub.encode(), orjson.dumps(wire)))
            sent += 1
            if len(request) == args.pack or n == args.events - 1:
                for partition, value in packs(request, settings.partitions):
                    values.append(value)
                    pending.append(
                        await producer.send(settings.topics.events, value, partition=partition)
                    )
                request.clear()
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings.from_env()
    stack = LocalStack.from_settings(base)
    stack.start()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(stack.settings, topics=Topics(prefix=prefix))
    app_id = f"{prefix}aggregator"
    org = "bench-org"
    asyncio.run(ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions))
    started = time.monotonic()
    values: list[bytes] = []
    sent = asyncio.run(prefill(settings, args, org, values))
    prefill_s = time.monotonic() - started
    web_port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERFLOW_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "METERFLOW_TOPIC_PREFIX": prefix,
                "METERFLOW_PARTITIONS": str(settings.partitions),
                "METERFLOW_AGGREGATOR_APP_ID": app_id,
                "METERFLOW_AGGREGATOR_PORT": str(web_port),
                "METERFLOW_AGGREGATOR_METRICS_PORT": str(metrics_port),
                "METERFLOW_AGGREGATOR_DATA_DIR": data_dir,
                "METERFLOW_AGGREGATOR_BATCH_SIZE": str(args.batch_size),
                "METERFLOW_LOG_LEVEL": "WARNING",
            }
        )
        log = Path(data_dir) / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "meterflow.cli", "aggregator"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            launch = time.monotonic()
            while not ready(web_port):
                if worker.poll() is not None or time.monotonic() - launch > 120:
                    raise SystemExit(f"worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            profiler = None
            if args.profile:
                # py-spy samples the worker while it works through the topic; stopped with
                # SIGINT, it writes the flame graph.
                kind = "flamegraph" if args.profile.endswith(".svg") else "raw"
                spy = str(Path(sys.executable).with_name("py-spy"))
                profiler = subprocess.Popen(
                    [spy, "record", "--pid", str(worker.pid), "-o", args.profile, "-f", kind]
                )
            t0 = time.monotonic()
            startup_s = t0 - launch
            done = 0.0
            sample: dict[str, float] = {}
            while done < sent:
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
                sample = metrics(metrics_port)
                done = sum(
                    v
                    for k, v in sample.items()
                    if k.startswith("meterflow_aggregator_events_total{")
                    and ('"applied"' in k or '"duplicate"' in k)
                )
            elapsed = time.monotonic() - t0
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        finally:
            worker.terminate()
            worker.wait(60)
    asyncio.run(delete_app_topics(settings, app_id))
    asyncio.run(delete_topics(settings.bootstrap_servers, settings.topics))
    batches = sample.get("meterflow_aggregator_batch_size_count", 0.0)
    reference = report.median(reference_loop(values) for _ in range(3))
    return {
        "benchmark": "aggregator_throughput",
        "at": datetime.now(UTC).isoformat(),
        "machine": asyncio.run(report.machine_facts(settings)),
        "events": sent,
        "subscriptions": args.subscriptions,
        "duplicate_share": args.duplicates,
        "partitions": settings.partitions,
        "batch_size": args.batch_size,
        "events_per_request": args.pack,
        "prefill_seconds": round(prefill_s, 2),
        "worker_startup_seconds": round(startup_s, 2),
        "processing_seconds": round(elapsed, 2),
        "events_per_second": round(sent / elapsed, 1),
        "reference_loop_events_per_second": round(reference, 1),
        "worker_share_of_reference": round(sent / elapsed / reference, 4),
        "applied": sample.get('meterflow_aggregator_events_total{outcome="applied"}', 0.0),
        "duplicates": sample.get('meterflow_aggregator_events_total{outcome="duplicate"}', 0.0),
        "mean_batch": round(sent / batches, 1) if batches else None,
    }


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
        "--profile",
        metavar="SVG",
        help="write a py-spy profile of the worker while it processes: a flame graph for "
        "a .svg name, collapsed stacks otherwise",
    )
    result = run(parser.parse_args())
    rows = [(key, value) for key, value in result.items() if key != "machine"]
    report.print_table(["aggregator throughput (one worker, pre-filled topic)", "result"], rows)
    print(f"\nwritten to {report.write_json('aggregator_throughput', result)}")


if __name__ == "__main__":
    main()
