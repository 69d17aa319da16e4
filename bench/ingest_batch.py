"""Throughput of `POST /api/v1/events/batch` against an in-process ingest server on the real
Kafka and Postgres (started, or reused when running): events per second acknowledged by the
broker, with request latency percentiles.

    .venv/bin/python bench/ingest_batch.py [--seconds 20] [--concurrency 8] [--batch 100]

Prints a table and writes JSON to bench/results/ (git-ignored). Uses its own topics and
database schema, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/ingest_batch.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from bench import report
from ingest.organizations import create_organization
from ingest.service import IngestServer
from ingest.settings import IngestSettings
from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics


def _batch(run: str, worker: int, n: int, size: int) -> bytes:
    return orjson.dumps(
        {
            "events": [
                {
                    "transaction_id": f"{run}-{worker}-{n}-{i}",
                    "external_subscription_id": f"sub-{(worker * 7 + i) % 50}",
                    "code": "api_calls",
                    "properties": {"gb": i % 10, "region": "eu"},
                }
                for i in range(size)
            ]
        }
    )


async def _worker(
    session: aiohttp.ClientSession, url: str, run: str, worker: int, size: int, until: float
) -> tuple[int, list[float], int]:
    sent, latencies, errors, n = 0, [], 0, 0
    while time.monotonic() < until:
        body = _batch(run, worker, n, size)
        n += 1
        started = time.perf_counter()
        async with session.post(url, data=body) as response:
            await response.read()
            ok = response.status == 200
        latencies.append(time.perf_counter() - started)
        if ok:
            sent += size
        else:
            errors += 1
    return sent, latencies, errors


async def run(seconds: float, concurrency: int, size: int) -> dict[str, Any]:
    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        _, key = await create_organization(settings, "bench")
        ingest = IngestSettings(host="127.0.0.1", port=0, metrics_port=0)
        async with IngestServer(settings, ingest) as server:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                url = server.url + "/api/v1/events/batch"
                await _worker(session, url, "warmup", 0, size, time.monotonic() + 2)
                started = time.monotonic()
                results = await asyncio.gather(
                    *(
                        _worker(session, url, run_id, w, size, started + seconds)
                        for w in range(concurrency)
                    )
                )
                elapsed = time.monotonic() - started
    finally:
        await delete_topics(settings.bootstrap_servers, settings.topics)
        conn = await connect(settings.dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
        finally:
            await conn.close()
    events = sum(r[0] for r in results)
    latencies = sorted(lat for r in results for lat in r[1])
    return {
        "benchmark": "ingest_batch",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": await report.machine_facts(base),
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "batch_size": size,
        "requests": len(latencies),
        "errors": sum(r[2] for r in results),
        "events": events,
        "events_per_second": round(events / elapsed, 1),
        "latency_ms": {
            "p50": round(report.p50(latencies) * 1000, 2),
            "p99": round(report.p99(latencies) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    LocalStack.from_settings(Settings.from_env()).start()  # reuses a running Kafka and Postgres
    result = asyncio.run(run(args.seconds, args.concurrency, args.batch))
    rows = [
        ("events/s", f"{result['events_per_second']:,.0f}"),
        ("events", f"{result['events']:,}"),
        ("requests", f"{result['requests']:,} ({result['errors']} errors)"),
        ("batch size x concurrency", f"{result['batch_size']} x {result['concurrency']}"),
        ("latency p50 / p99 / max", "{p50} / {p99} / {max} ms".format(**result["latency_ms"])),
        ("duration", f"{result['seconds']} s"),
    ]
    report.print_table(["ingest batch endpoint", "result"], rows)
    print(f"\nwritten to {report.write_json('ingest_batch', result)}")


if __name__ == "__main__":
    main()
