"""Throughput of `POST /api/v1/events/batch`: a `meterflow ingest` server in its own process
on the real Kafka and Postgres (started, or reused when running), loaded from this process
(the load generator) over HTTP; events per second acknowledged by the broker, with request
latency percentiles.

    .venv/bin/python bench/ingest_batch.py [--seconds 20] [--concurrency 8] [--batch 100]
        [--workers 1] [--server-src DIR]

`--workers` sets METERFLOW_INGEST_WORKERS of the server; `--server-src DIR` runs the server
from another source tree (e.g. an older commit's `src`, extracted with `git archive`) so that
two versions can be compared side by side. The server's pid is printed (to attach py-spy) and
its log is kept in a temporary file. Besides throughput it reports the server's CPU time per
event (its workers included), which a busy shared machine disturbs far less. Prints a table
and writes JSON to bench/results/ (git-ignored). Uses its own topics and database schema,
removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/ingest_batch.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import psutil

from bench import report
from gateway.organizations import create_organization
from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.stack.processes import terminate
from meterflow.topics import delete_topics, ensure_topics

SERVER_START_TIMEOUT = 60.0


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _server(settings: Settings, workers: int, src: Path | None) -> Iterator[tuple[str, int]]:
    """`meterflow ingest` in a child process on free ports: yields (base URL, pid)."""
    port, metrics_port = _free_port(), _free_port()
    env = dict(os.environ)
    env.update(
        METERFLOW_TOPIC_PREFIX=settings.topics.prefix,
        METERFLOW_DB_SCHEMA=settings.db_schema,
        METERFLOW_INGEST_HOST="127.0.0.1",
        METERFLOW_INGEST_PORT=str(port),
        METERFLOW_INGEST_METRICS_PORT=str(metrics_port),
        METERFLOW_INGEST_WORKERS=str(workers),
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATABASE_URL=settings.dsn,
    )
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the child's lifetime
        prefix="ingest-bench-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterflow.cli", "ingest"], env=env, stdout=log, stderr=log
    )
    try:
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers(metrics):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest server did not start; its log: {log.name}")
            time.sleep(0.2)
        print(f"ingest server pid {proc.pid}, log {log.name}", file=sys.stderr)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        terminate(proc.pid, timeout=30)
        proc.wait()
        log.close()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server process and its workers so far."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


async def _load(
    url: str, key: str, seconds: float, concurrency: int, size: int, run_id: str, pid: int
) -> Any:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await _worker(session, url, "warmup", 0, size, time.monotonic() + 2)
        cpu = _cpu_seconds(pid)
        started = time.monotonic()
        results = await asyncio.gather(
            *(_worker(session, url, run_id, w, size, started + seconds) for w in range(concurrency))
        )
        return results, time.monotonic() - started, _cpu_seconds(pid) - cpu


async def _setup(settings: Settings) -> str:
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    _, key = await create_organization(settings, "bench")
    return key


async def _teardown(settings: Settings) -> None:
    await delete_topics(settings.bootstrap_servers, settings.topics)
    conn = await connect(settings.dsn)
    try:
        await conn.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
    finally:
        await conn.close()


def run(
    seconds: float, concurrency: int, size: int, *, workers: int = 1, src: Path | None = None
) -> dict[str, Any]:
    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")
    try:
        key = asyncio.run(_setup(settings))
        with _server(settings, workers, src) as (server_url, pid):
            url = server_url + "/api/v1/events/batch"
            results, elapsed, cpu = asyncio.run(
                _load(url, key, seconds, concurrency, size, run_id, pid)
            )
    finally:
        asyncio.run(_teardown(settings))
    events = sum(r[0] for r in results)
    latencies = sorted(lat for r in results for lat in r[1])
    return {
        "benchmark": "ingest_batch",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": asyncio.run(report.machine_facts(base)),
        "server": {"process": "separate", "workers": workers, "src": str(src or "installed")},
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "batch_size": size,
        "requests": len(latencies),
        "errors": sum(r[2] for r in results),
        "events": events,
        "events_per_second": round(events / elapsed, 1),
        # Robust to a shared machine, where throughput is not: what the server spent.
        "server_cpu_cores": round(cpu / elapsed, 2),
        "server_cpu_us_per_event": round(cpu / events * 1e6, 2) if events else None,
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
    parser.add_argument("--workers", type=int, default=1, help="METERFLOW_INGEST_WORKERS")
    parser.add_argument("--server-src", type=Path, default=None, help="PYTHONPATH of the server")
    args = parser.parse_args()
    LocalStack.from_settings(Settings.from_env()).start()  # reuses a running Kafka and Postgres
    result = run(
        args.seconds, args.concurrency, args.batch, workers=args.workers, src=args.server_src
    )
    rows = [
        ("events/s", f"{result['events_per_second']:,.0f}"),
        ("events", f"{result['events']:,}"),
        ("requests", f"{result['requests']:,} ({result['errors']} errors)"),
        ("batch size x concurrency", f"{result['batch_size']} x {result['concurrency']}"),
        ("server workers", str(result["server"]["workers"])),
        (
            "server CPU",
            f"{result['server_cpu_us_per_event']} us/event, {result['server_cpu_cores']} cores",
        ),
        ("latency p50 / p99 / max", "{p50} / {p99} / {max} ms".format(**result["latency_ms"])),
        ("duration", f"{result['seconds']} s"),
    ]
    report.print_table(["ingest batch endpoint", "result"], rows)
    print(f"\nwritten to {report.write_json('ingest_batch', result)}")


if __name__ == "__main__":
    main()
