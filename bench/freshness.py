"""Freshness under a steady load: the time from an event's HTTP 200 to the event being
visible in current usage, for meterflow (ingest and aggregator as real processes) and for
the Postgres-per-event baseline (its own process), p50 / p99 / max over many probes.

    .venv/bin/python -m bench.freshness [--rate 2000] [--seconds 30] [--warmup 3]
        [--probe-interval 0.075] [--subscriptions 50] [--runs 1]
        [--batch-size N] [--batch-within S] [--side meterflow|baseline|both]
        [--workers N] [--probe-via owner|other]

A load generator in a process of its own posts batches of 100 events to
`POST /api/v1/events/batch` at `--rate` events/s for `--seconds`. After `--warmup` seconds a
probe loop (this process) sends one event every `--probe-interval` seconds for a probe
subscription that receives nothing else (meterflow: `POST /api/v1/events`; the baseline,
which has no single-event endpoint: a batch of one), notes the moment its 200 arrived, then
reads the probe subscription's current usage every 10 ms until the count includes the
event. meterflow is read from the aggregator's `/current-usage` view directly (what the
public `GET /api/v1/customers/{id}/current_usage` forwards to), the baseline from its own
endpoint (one SQL aggregate per charge). The delay ends when the answer that shows the
event has been read, so it includes one read (about a millisecond) and the 10 ms polling
step. Probes do not wait for each other: probe n + 1 leaves `--probe-interval` after probe n
(or at its 200, if that came later), so slow visibility does not thin out the sample.

`--workers N` runs the aggregator with METERFLOW_AGGREGATOR_WORKERS=N: N workers of one app
under its one command, which share the events partitions; the probe's usage is read from
the worker owning its partition, or with `--probe-via other` from another worker, which
Faust forwards to the owner (as it does for ingest's requests, which all go to one
worker's URL).

`--batch-size` and `--batch-within` set METERFLOW_AGGREGATOR_BATCH_SIZE and
METERFLOW_AGGREGATOR_BATCH_WITHIN of the aggregator (default: the aggregator's own defaults),
`--aggregator-env NAME=VALUE` any other of its settings, `--fetch-max-wait-ms N` its
METERFLOW_AGGREGATOR_FETCH_MAX_WAIT (faust-streaming alone fixes it at 1,500 ms; the
aggregator's own transport takes the setting, `aggregator.kafka_transport`).

Checks of every run: each probe is seen exactly once per event sent (the probe's final count
through the public API equals the probes sent), and once the load has stopped, every
background event accepted with a 200 is in the totals (events per code and summed `gb`),
on both sides. Prints a table and writes JSON to bench/results/. Uses its own topics,
Faust app id and database schemas, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/freshness.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import psutil

from aggregator.settings import AggregatorSettings
from bench import baseline, report
from bench.probes import POLL_STEP, PROBE, probe_event, probe_loop, summary
from bench.processes import (
    Pipeline,
    metrics,
    over_workers,
    owned_partitions,
    pipeline,
    scratch_deployment,
)
from bench.public_api import CUSTOMER, create_catalog, expect_ok, wait_until
from bench.steady_load import BATCH, Load, LoadProcess, expected_load, load_subscriptions
from bench.workload import (
    CHARGES,
    COUNT_CODE,
    SUM_CODE,
    SUM_FIELD,
    Usage,
    WrongTotals,
    current_period,
    usage_from_baseline,
    usage_from_meterflow,
)
from gateway.organizations import create_organization
from meterflow.db import connect
from meterflow.event_records import partition_for
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack

DRAIN_TIMEOUT = 180.0


# -- meterflow ----------------------------------------------------------------------------


async def probed_under_load(
    batch_url: str,
    api_key: str,
    load: Load,
    send: Callable[[int], Awaitable[None]],
    count: Callable[[], Awaitable[int]],
) -> tuple[list[float], dict[str, Any], float]:
    """The steady load started, probes from its warm-up to its end: the probes' delays,
    what the load had accepted, and the seconds it ran."""
    generator = LoadProcess(batch_url, api_key, load)
    try:
        await asyncio.sleep(load.warmup)
        until = generator.started + load.seconds
        delays = await probe_loop(send, count, load.probe_interval, until)
        background = await generator.result()
    finally:
        generator.stop()
    return delays, background, time.monotonic() - generator.started


async def freshness_meterflow(
    base: Settings,
    load: Load,
    aggregator_env: dict[str, str],
    logs: Path | None = None,
    workers: int = 1,
    probe_via: str = "owner",
) -> dict[str, Any]:
    """One run with `workers` aggregator workers, the probe's usage read from the worker
    owning its partition (`probe_via` "owner") or from another one, which Faust forwards to
    the owner ("other"); with `logs`, the services' logs stay in logs/freshness-<run id>/."""
    subscriptions = load_subscriptions(load)
    async with scratch_deployment(base) as settings:
        org, key = await create_organization(settings, "bench-freshness")
        if logs is not None:
            kept = logs / f"freshness-{settings.db_schema.removeprefix('bench_')}"
            kept.mkdir(parents=True)
        place = contextlib.nullcontext(str(kept)) if logs else tempfile.TemporaryDirectory()
        with place as tmp:
            overrides = {"METERFLOW_INGEST_OUTBOX_INTERVAL": "0.5", **aggregator_env}
            async with pipeline(
                settings, Path(tmp), overrides=overrides, aggregators=workers
            ) as services:
                ingest, aggregator = services.services["ingest"], services.services["aggregator"]
                api_url, agg_url = services.api_url, services.aggregator_url
                probe_url = probe_worker_url(services, probe_via)
                headers = {"Authorization": f"Bearer {key}"}
                timeout = aiohttp.ClientTimeout(total=30)
                async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
                    await create_catalog(session, api_url, [PROBE, *subscriptions])
                    query = f"?organization_id={org.id}"

                    async def usage(subscription: str, via: str = agg_url) -> Usage | None:
                        url = f"{via}/current-usage/{subscription}{query}"
                        async with session.get(url) as response:
                            if response.status == 404:  # catalog record not there yet
                                return None
                            body = await expect_ok(response, "aggregator current usage")
                        return usage_from_meterflow(orjson.loads(body))

                    async def known() -> bool:
                        return all([await usage(s) is not None for s in [PROBE, *subscriptions]])

                    await wait_until(known, 60, "the catalog reaching the aggregator")

                    async def send(n: int) -> None:
                        body = {"event": probe_event(n)}
                        async with session.post(f"{api_url}/api/v1/events", json=body) as response:
                            await expect_ok(response, "POST /api/v1/events")

                    async def count() -> int:
                        found = await usage(PROBE, probe_url)
                        return found.calls if found else 0

                    def cpu_now() -> dict[str, float]:
                        return {
                            "ingest": ingest.cpu_seconds(),
                            "aggregator": aggregator.cpu_seconds(),  # (its workers too)
                        }

                    cpu = cpu_now()
                    delays, background, busy = await probed_under_load(
                        f"{api_url}/api/v1/events/batch", key, load, send, count
                    )
                    cpu = {name: round((t - cpu[name]) / busy, 2) for name, t in cpu_now().items()}
                    if background["error_count"]:
                        raise WrongTotals(f"background load refused: {background['errors']}")
                    sent = expected_load(background)

                    async def drained() -> bool:
                        found = [await usage(s) for s in subscriptions]
                        return sum_usage(u for u in found if u) == sent

                    await wait_until(drained, DRAIN_TIMEOUT, f"background totals {sent}")
                    public = (
                        f"{api_url}/api/v1/customers/{CUSTOMER}/current_usage"
                        f"?external_subscription_id={PROBE}"
                    )
                    async with session.get(public) as response:
                        body = await expect_ok(response, "GET current_usage")
                    Usage(len(delays), 0, Decimal(0)).check(
                        "meterflow (public API)", PROBE, usage_from_meterflow(orjson.loads(body))
                    )
                    samples = over_workers(metrics(services.ports["agg_metrics"]))
                    applied = samples.get('meterflow_aggregator_events_total{outcome="applied"}')
                    if applied != sent.calls + sent.storage_events + len(delays):
                        raise WrongTotals(f"aggregator applied {applied} events")
                    batches = samples.get("meterflow_aggregator_batch_size_count", 0.0)
    return summary("meterflow", delays, background) | {
        "workers": workers,
        "probe_via": probe_via,
        "cpu_cores_busy": cpu,
        "aggregator_batches": batches,
        "mean_batch": round(applied / batches, 1) if batches else None,
    }


def probe_worker_url(services: Pipeline, via: str) -> str:
    """The URL of the worker the probe's usage is read from: the one owning the probe's
    partition, or ("other") another, which forwards the request to the owner."""
    partition = partition_for(PROBE.encode(), services.settings.partitions)
    webs = services.aggregator_web_ports
    owner = [partition in (owned_partitions(web) or ()) for web in webs]
    if via == "other" and len(owner) < 2:
        raise SystemExit("--probe-via other needs --workers 2 or more")
    web = webs[owner.index(via == "owner")]
    return f"http://127.0.0.1:{web}"


def sum_usage(found: Any) -> Usage:
    calls = storage = 0
    gigabytes = Decimal(0)
    for u in found:
        calls += u.calls
        storage += u.storage_events
        gigabytes += u.gigabytes
    return Usage(calls, storage, gigabytes)


# -- the baseline -------------------------------------------------------------------------


async def serve_baseline(schema: str) -> None:
    """The baseline's endpoint in this process until stdin closes; prints its port."""
    base = Settings.from_env()
    period = current_period(datetime.now(UTC))
    async with baseline.BaselineServer(base.dsn, schema, CHARGES, period) as server:
        print(server.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def freshness_baseline(base: Settings, load: Load) -> dict[str, Any]:
    schema = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    organization_id, key = str(uuid.uuid4()), uuid.uuid4().hex
    await baseline.create_schema(base.dsn, schema)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.freshness", "--serve-baseline", schema],
        cwd=report.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        conn = await connect(base.dsn, schema=schema)
        try:
            await baseline.add_api_key(conn, key, organization_id)
        finally:
            await conn.close()
        assert server.stdout is not None
        line = await asyncio.to_thread(server.stdout.readline)
        url = f"http://127.0.0.1:{int(line)}"
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def send(n: int) -> None:
                body = {"events": [probe_event(n)]}
                async with session.post(f"{url}/api/v1/events/batch", json=body) as response:
                    await expect_ok(response, "baseline POST /api/v1/events/batch")

            async def count() -> int:
                async with session.get(f"{url}/current-usage/{PROBE}") as response:
                    body = await expect_ok(response, "baseline current usage")
                return usage_from_baseline(orjson.loads(body)).calls

            process = psutil.Process(server.pid)
            cpu = sum(process.cpu_times()[:2])
            delays, background, seconds = await probed_under_load(
                f"{url}/api/v1/events/batch", key, load, send, count
            )
            busy = round((sum(process.cpu_times()[:2]) - cpu) / seconds, 2)
        if background["error_count"]:
            raise WrongTotals(f"baseline refused background load: {background['errors']}")
        conn = await connect(base.dsn, schema=schema)
        try:
            totals = await baseline.usage_of_all(
                conn, organization_id, *current_period(datetime.now(UTC)), SUM_FIELD
            )
        finally:
            await conn.close()
        stored = Usage(
            sum(n for (s, c), (n, _) in totals.items() if s != PROBE and c == COUNT_CODE),
            sum(n for (s, c), (n, _) in totals.items() if s != PROBE and c == SUM_CODE),
            sum(
                (t for (s, c), (_, t) in totals.items() if s != PROBE and c == SUM_CODE), Decimal(0)
            ),
        )
        expected_load(background).check("baseline", "background subscriptions", stored)
        probe = totals.get((PROBE, COUNT_CODE), (0, Decimal(0)))[0]
        if probe != len(delays):
            raise WrongTotals(f"baseline holds {probe} probe events, {len(delays)} were sent")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        await baseline.drop_schema(base.dsn, schema)
    return summary("baseline", delays, background) | {"cpu_cores_busy": {"server": busy}}


# -- the measure --------------------------------------------------------------------------


def aggregator_settings(batch_size: int | None, batch_within: float | None) -> dict[str, str]:
    env = {}
    if batch_size is not None:
        env["METERFLOW_AGGREGATOR_BATCH_SIZE"] = str(batch_size)
    if batch_within is not None:
        env["METERFLOW_AGGREGATOR_BATCH_WITHIN"] = str(batch_within)
    return env


async def run(
    base: Settings,
    load: Load,
    *,
    sides: tuple[str, ...] = ("meterflow", "baseline"),
    batch_size: int | None = None,
    batch_within: float | None = None,
    extra_env: dict[str, str] | None = None,
    fetch_max_wait_ms: int | None = None,
    logs: Path | None = None,
    workers: int = 1,
    probe_via: str = "owner",
) -> list[dict[str, Any]]:
    """One run of each side; each entry is one side's summary."""
    env = aggregator_settings(batch_size, batch_within) | (extra_env or {})
    if fetch_max_wait_ms is not None:
        env["METERFLOW_AGGREGATOR_FETCH_MAX_WAIT"] = str(fetch_max_wait_ms / 1000)
    effective = AggregatorSettings.from_env(env)
    found = []
    for side in sides:
        if side == "meterflow":
            result = await freshness_meterflow(base, load, env, logs, workers, probe_via)
            result["aggregator"] = {
                "batch_size": effective.batch_size,
                "batch_within": effective.batch_within,
                "commit_interval": effective.commit_interval,
                "fetch_max_wait_ms": round(effective.fetch_max_wait * 1000),
                "env": env,
            }
        else:
            result = await freshness_baseline(base, load)
        found.append(result)
    return found


def rows(results: list[dict[str, Any]]) -> list[list[object]]:
    table = []
    for r in results:
        agg = r.get("aggregator")
        workers = r.get("workers", 1)
        label = (
            f"{r['side']}, {workers} workers, via {r['probe_via']}" if workers > 1 else r["side"]
        )
        table.append(
            [
                label,
                f"{agg['batch_size']} / {agg['batch_within']}s / {agg['fetch_max_wait_ms']}ms"
                if agg
                else "-",
                r["probes"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["background"]["target_rate"],
                r["background"]["achieved_rate"],
            ]
        )
    return table


HEADERS = [
    "side",
    "aggregator batch / within / fetch wait",
    "probes",
    "p50 ms",
    "p99 ms",
    "max ms",
    "target events/s",
    "achieved events/s",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="background events/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="background load duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before the first probe")
    parser.add_argument("--probe-interval", type=float, default=0.075)
    parser.add_argument("--subscriptions", type=int, default=50, help="background subscriptions")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--batch-within", type=float, default=None)
    parser.add_argument(
        "--aggregator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another METERFLOW_AGGREGATOR_* setting for the aggregator (repeatable)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=None,
        help="the aggregator's Kafka fetch wait (METERFLOW_AGGREGATOR_FETCH_MAX_WAIT)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep meterflow's service logs in this directory"
    )
    parser.add_argument("--side", choices=("meterflow", "baseline", "both"), default="both")
    parser.add_argument("--workers", type=int, default=1, help="meterflow's aggregator workers")
    parser.add_argument(
        "--probe-via",
        choices=("owner", "other"),
        default="owner",
        help="read the probe's usage from the worker owning it, or from another (forwarded)",
    )
    parser.add_argument("--serve-baseline", metavar="SCHEMA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        asyncio.run(serve_baseline(args.serve_baseline))
        return
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    load = Load(args.rate, args.seconds, args.warmup, args.probe_interval, args.subscriptions)
    sides = ("meterflow", "baseline") if args.side == "both" else (args.side,)
    results = []
    for _ in range(args.runs):
        results += asyncio.run(
            run(
                base,
                load,
                sides=sides,
                batch_size=args.batch_size,
                batch_within=args.batch_within,
                extra_env=dict(item.split("=", 1) for item in args.aggregator_env),
                fetch_max_wait_ms=args.fetch_max_wait_ms,
                logs=args.logs,
                workers=args.workers,
                probe_via=args.probe_via,
            )
        )
    report.print_table(HEADERS, rows(results))
    report.write_record(
        "freshness",
        machine,
        {
            "load": vars(args) | {"batch": BATCH, "poll_step": POLL_STEP},
            "runs": results,
        },
    )


if __name__ == "__main__":
    main()
