"""Throughput of `POST /api/v1/events/batch` against the Postgres-per-event baseline, side by
side in one run: each side's servers in processes of their own on the real Kafka and Postgres
(started, or reused when running), loaded over HTTP by client processes
(`bench.http_load`); events per second that each side acknowledged, with latency
percentiles, each side's server CPU and the clients' own CPU.

    .venv/bin/python -m bench.ingest_batch [--seconds 8] [--runs 3] [--concurrency 8]
        [--batch 100] [--workers N] [--client-processes 1] [--server-src DIR] [--profile]

meterflow is `meterflow ingest` answering once Kafka acknowledged every event (`acks=all`,
idempotent producer); the baseline is `bench.baseline` answering once its INSERT committed.
Each side runs as many server processes sharing its port (SO_REUSEPORT) as `meterflow ingest`
starts by default (METERFLOW_INGEST_WORKERS, `auto`: one per core, at most 4), or
`--workers N` each.
The runs alternate which side goes first, the table shows medians and the ratio
meterflow/baseline, and the JSON (bench/results/) keeps every run. Every request carries
fresh transaction ids; afterwards the events on meterflow's topic and the baseline's rows are
counted by code with their summed gigabytes and must equal what was acknowledged. `--profile`
samples the meterflow server with py-spy during its first run and keeps its top frames.
`--server-src DIR` runs meterflow's server from another source tree (e.g. an older commit's
`src`, extracted with `git archive`), to compare versions.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/ingest_batch.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import collections
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
from typing import Any

import orjson
import psutil

from bench import baseline, report
from bench.http_load import SERIAL, TAG, run_load
from bench.processes import cpu_seconds
from bench.suite_ingest import drop_schema, topic_usage
from bench.workload import SUM_CODE, SUM_FIELD, Usage, event
from gateway.organizations import create_organization
from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.stack.processes import terminate
from meterflow.topics import delete_topics, ensure_topics
from web.settings import IngestSettings

SERVER_START_TIMEOUT = 60.0
WARMUP_SECONDS = 2.0
SIDES = ("meterflow", "baseline")


def body_template(size: int, subscriptions: int = 50) -> bytes:
    """One batch body; `TAG` in each transaction id becomes the request's own tag, and
    `SERIAL` in the timestamps three digits of its own: the events of a request are each at
    their own millisecond, and of consecutive requests some minutes apart (all in the last
    hour), as a client's clock would stamp them, not a few values a memo would hold."""
    hour_ago = (int(time.time()) - 3600) // 1000 * 1000  # its last three digits are 000
    events = [
        event(f"ingest-{i % subscriptions}", i, hour_ago, tag=TAG.decode()) for i in range(size)
    ]
    body = orjson.dumps({"events": events})
    whole = f'"timestamp":{hour_ago}'.encode()
    assert body.count(whole) == size, "every timestamp within the same second"
    return body.replace(whole, f'"timestamp":{hour_ago // 1000}'.encode() + SERIAL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextmanager
def _processes(commands: list[list[str]], env: dict[str, str], port: int) -> Iterator[list[int]]:
    """Child processes, until `port` accepts connections; yields their pids."""
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the children's lifetime
        prefix="ingest-bench-", suffix=".log", delete=False
    )
    procs = [subprocess.Popen(c, env=env, stdout=log, stderr=log) for c in commands]
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _accepts(port):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"a server did not start; its log: {log.name}")
            time.sleep(0.2)
        print(f"server pids {[p.pid for p in procs]}, log {log.name}", file=sys.stderr)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            terminate(proc.pid, timeout=30)
            proc.wait()
        log.close()


def _server_env(settings: Settings, workers: int | None) -> dict[str, str]:
    """`meterflow ingest`'s environment on free ports; its workers as `meterflow up` starts
    them (the variable as set, else `auto`) unless `workers` is given."""
    env = dict(os.environ)
    env.update(
        METERFLOW_TOPIC_PREFIX=settings.topics.prefix,
        METERFLOW_DB_SCHEMA=settings.db_schema,
        METERFLOW_INGEST_HOST="127.0.0.1",
        METERFLOW_INGEST_PORT=str(_free_port()),
        METERFLOW_INGEST_METRICS_PORT=str(_free_port()),
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATABASE_URL=settings.dsn,
    )
    if workers is not None:
        env["METERFLOW_INGEST_WORKERS"] = str(workers)
    return env


@contextmanager
def _server(env: dict[str, str], src: Path | None) -> Iterator[tuple[str, int]]:
    """`meterflow ingest` in a child process with `env`: yields (base URL, pid)."""
    env = dict(env)
    port = int(env["METERFLOW_INGEST_PORT"])
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "meterflow.cli", "ingest"]
    with _processes([command], env, port) as pids:
        yield f"http://127.0.0.1:{port}", pids[0]


@contextmanager
def _baseline_server(dsn: str, schema: str, workers: int) -> Iterator[tuple[str, list[int]]]:
    """`workers` baseline processes sharing a free port: yields (base URL, their pids)."""
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(report.REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "bench.baseline", "--dsn", dsn, "--schema", schema]
    command += ["--port", str(port), "--reuse-port"]
    with _processes([command] * workers, env, port) as pids:
        yield f"http://127.0.0.1:{port}", pids


def _store_pids(side: str) -> list[int]:
    """The processes of the side's store on this machine: Kafka's broker (a JVM running
    kafka.Kafka) or Postgres (every postgres process). Other users of the shared stack count
    too, so this is an upper bound."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        broker = "kafka.Kafka" in " ".join(proc.info["cmdline"] or ())
        database = (proc.info["name"] or "").startswith("postgres")
        if broker if side == "meterflow" else database:
            found.append(proc.pid)
    return found


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


async def _setup(settings: Settings) -> str:
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    _, key = await create_organization(settings, "bench")
    return key


async def _teardown(settings: Settings) -> None:
    await delete_topics(settings.bootstrap_servers, settings.topics)
    await drop_schema(settings, settings.db_schema)


async def _baseline_setup(dsn: str, schema: str) -> tuple[str, str]:
    """The baseline's schema and an API key: (organization id, key)."""
    await baseline.create_schema(dsn, schema)
    organization_id, key = str(uuid.uuid4()), uuid.uuid4().hex
    conn = await connect(dsn, schema=schema)
    try:
        await baseline.add_api_key(conn, key, organization_id)
    finally:
        await conn.close()
    return organization_id, key


async def _baseline_usage(dsn: str, schema: str, organization_id: str) -> Usage:
    conn = await connect(dsn, schema=schema)
    try:
        total, stored, gigabytes = await baseline.stored_totals(
            conn, organization_id, SUM_CODE, SUM_FIELD
        )
    finally:
        await conn.close()
    return Usage(total - stored, stored, gigabytes)


def _profile(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling the server (and its worker processes) for `seconds`."""
    out = Path(tempfile.gettempdir()) / f"ingest-bench-{pid}.pyspy"
    py_spy = str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200"]
    command += ["-f", "raw", "-o", str(out), "--subprocesses", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(raw: Path, count: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The frames py-spy sampled most, by their own time and with their callees (percent)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames, n = stack.split(";"), int(samples)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):  # not the process line
            inclusive[frame] += n
    return {
        name: [(f, round(100 * n / total, 1)) for f, n in counter.most_common(count)]
        for name, counter in (("self", own), ("inclusive", inclusive))
    }


def _measure(
    side: str,
    url: str,
    key: str,
    pids: list[int],
    template: bytes,
    tag: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    store = _store_pids(side)
    cpu = sum(cpu_seconds(pid) for pid in pids)
    store_cpu, machine = _cpu_of(store), psutil.cpu_times()
    results, elapsed = run_load(
        url + "/api/v1/events/batch",
        key,
        template,
        tag=tag,
        clients=args.concurrency,
        processes=args.client_processes,
        seconds=args.seconds,
    )
    server_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    store_cpu = _cpu_of(store) - store_cpu
    after = psutil.cpu_times()
    busy = 1 - (after.idle - machine.idle) / max(1e-9, sum(after) - sum(machine))
    accepted = sum(r.accepted for r in results)
    latencies = [lat for r in results for lat in r.latencies]
    events = accepted * args.batch
    return {
        "side": side,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "accepted_requests": accepted,
        "errors": [e for r in results for e in r.errors][:5],
        "events": events,
        "events_per_second": round(events / elapsed, 1),
        "latency_ms": {
            "p50": round(report.p50(latencies) * 1000, 2),
            "p99": round(report.p99(latencies) * 1000, 2),
        },
        "server_cpu_cores": round(server_cpu / elapsed, 2),
        "server_cpu_us_per_event": round(server_cpu / events * 1e6, 2) if events else None,
        "store_cpu_cores": round(store_cpu / elapsed, 2),
        "store_cpu_us_per_event": round(store_cpu / events * 1e6, 2) if events else None,
        "client_cpu_cores": round(sum(r.cpu_seconds for r in results) / elapsed, 2),
        "client_processes": len(results),
        "machine_busy": round(busy, 2),
        "load_average": report.load_average(),
    }


def _run_side(
    side: str,
    server: tuple[str, str, list[int]],
    template: bytes,
    run: int,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One measured run of a side (py-spy on meterflow's first with `--profile`): its figures
    and the profile's top frames, if taken."""
    url, key, pids = server
    spied = args.profile and run == 0 and side == "meterflow"
    spy = _profile(pids[0], args.seconds) if spied else None
    found = _measure(side, url, key, pids, template, f"{side[0]}{run}-", args)
    profile = None
    if spy is not None:
        spy.wait()
        raw = Path(tempfile.gettempdir()) / f"ingest-bench-{pids[0]}.pyspy"
        profile = top_frames(raw) if raw.exists() else None
    print(
        f"{side:9} run {run + 1}: {found['events_per_second']:>10,.0f} events/s, "
        f"p99 {found['latency_ms']['p99']} ms, server {found['server_cpu_cores']} cores, "
        f"store {found['store_cpu_cores']}, clients {found['client_cpu_cores']} cores, "
        f"machine busy {found['machine_busy']:.0%}",
        file=sys.stderr,
    )
    return found, profile


def _sent(requests: int, size: int) -> Usage:
    one = Usage.expected(size)
    return Usage(one.calls * requests, one.storage_events * requests, one.gigabytes * requests)


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")
    schema = f"bench_baseline_{run_id}"
    template = body_template(args.batch)
    server_env = _server_env(settings, args.workers)
    workers = IngestSettings.from_env(server_env).workers  # the baseline's as many
    machine = asyncio.run(report.machine_facts(base))
    runs: list[dict[str, Any]] = []
    accepted = dict.fromkeys(SIDES, 0)
    profile: dict[str, Any] | None = None
    try:
        key = asyncio.run(_setup(settings))
        organization_id, baseline_key = asyncio.run(_baseline_setup(base.dsn, schema))
        with (
            _server(server_env, args.server_src) as (mf_url, mf_pid),
            _baseline_server(base.dsn, schema, workers) as (bl_url, bl_pids),
        ):
            servers = {
                "meterflow": (mf_url, key, [mf_pid]),
                "baseline": (bl_url, baseline_key, bl_pids),
            }
            # Warm-up: connections, pools, key caches (not measured; its events are checked).
            for side, (url, side_key, _) in servers.items():
                warm, _ = run_load(
                    url + "/api/v1/events/batch", side_key, template, tag=f"w{side[0]}",
                    clients=2, processes=1, seconds=WARMUP_SECONDS,
                )  # fmt: skip
                accepted[side] += sum(r.accepted for r in warm)
            for i in range(args.runs):
                for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                    found, spied = _run_side(side, servers[side], template, i, args)
                    profile = spied or profile
                    accepted[side] += found["accepted_requests"]
                    runs.append(found)
        # Not a rate of refusals: every request must have been acknowledged and stored.
        refused = [e for r in runs for e in r["errors"]]
        if refused:
            raise RuntimeError(f"requests refused: {refused[:3]}")
        stored_events, records = asyncio.run(topic_usage(settings, settings.topics.events))
        stored = {
            "meterflow": stored_events,
            "baseline": asyncio.run(_baseline_usage(base.dsn, schema, organization_id)),
        }
        for side in SIDES:
            _sent(accepted[side], args.batch).check(f"{side} ingest", "all", stored[side])
    finally:
        asyncio.run(_teardown(settings))
        asyncio.run(baseline.drop_schema(base.dsn, schema))
    return {
        "machine": machine,
        "workers": workers,
        "runs": runs,
        "profile": profile,
        # Under this load a lane merges concurrent requests' events into one record
        # (`ingest.broker.OpenPack`): what the aggregator then pays per record is shared.
        "events_per_record": round((accepted["meterflow"] * args.batch) / max(1, records), 1),
        **_summary(runs),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(side: str, *path: str) -> float:
        values = []
        for r in runs:
            if r["side"] == side:
                value: Any = r
                for part in path:
                    value = value[part]
                values.append(value)
        return report.median(values)

    sides = {
        side: {
            "events_per_second": median(side, "events_per_second"),
            "latency_p50_ms": median(side, "latency_ms", "p50"),
            "latency_p99_ms": median(side, "latency_ms", "p99"),
            "server_cpu_cores": median(side, "server_cpu_cores"),
            "server_cpu_us_per_event": median(side, "server_cpu_us_per_event"),
            "store_cpu_us_per_event": median(side, "store_cpu_us_per_event"),
            "store_cpu_cores": median(side, "store_cpu_cores"),
            "client_cpu_cores": median(side, "client_cpu_cores"),
            "machine_busy": median(side, "machine_busy"),
        }
        for side in SIDES
    }
    mf, bl = sides["meterflow"], sides["baseline"]
    return {
        "medians": sides,
        "ratio": round(report.ratio(mf["events_per_second"], bl["events_per_second"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per run and side")
    parser.add_argument("--runs", type=int, default=3, help="runs per side")
    parser.add_argument("--concurrency", type=int, default=8, help="clients (connections)")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument(
        "--workers", type=int, default=None, help="server processes per side (default: auto)"
    )
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--server-src", type=Path, default=None, help="meterflow's PYTHONPATH")
    parser.add_argument("--profile", action="store_true", help="py-spy the first meterflow run")
    args = parser.parse_args()
    LocalStack.from_settings(Settings.from_env()).start()  # reuses a running Kafka and Postgres
    started_load = report.load_average()
    result = run(args)
    medians, ratio = result["medians"], result["ratio"]
    mf, bl = medians["meterflow"], medians["baseline"]
    rows = [
        (label, mf[name], bl[name], report.ratio(mf[name], bl[name]) if name else None)
        for label, name in (
            ("events/s (median)", "events_per_second"),
            ("latency p50 ms", "latency_p50_ms"),
            ("latency p99 ms", "latency_p99_ms"),
            ("server CPU us/event", "server_cpu_us_per_event"),
            ("server CPU cores", "server_cpu_cores"),
            ("Kafka / Postgres CPU us/event", "store_cpu_us_per_event"),
            ("Kafka / Postgres CPU cores", "store_cpu_cores"),
            ("client CPU cores", "client_cpu_cores"),
            ("machine busy (0-1)", "machine_busy"),
        )
    ]
    print(
        f"\n{args.runs} runs x {args.seconds:g} s per side, batches of {args.batch} from "
        f"{args.concurrency} clients in {args.client_processes} process(es), {result['workers']} "
        f"server process(es) per side; load average {started_load} at the start, "
        f"{report.load_average()} at the end\n"
    )
    report.print_table(
        ["ingest batch endpoint", "meterflow", "baseline", "meterflow/baseline"], rows
    )
    print(f"\nmeterflow / baseline, events/s: {ratio:.2f}x")
    print(f"meterflow's events topic: {result['events_per_record']} events a record")
    if result["profile"]:
        print("\nmeterflow server, py-spy top frames (own time, % of samples):")
        for frame, share in result["profile"]["self"][:10]:
            print(f"  {share:5.1f}%  {frame}")
    fields = {"arguments": vars(args) | {"server_src": str(args.server_src or "installed")}}
    report.write_record("ingest_batch", result.pop("machine"), fields | result)


if __name__ == "__main__":
    main()
