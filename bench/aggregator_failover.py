"""What a dead aggregator worker costs current usage when two workers share the events
partitions: its subscriptions answer 503 `aggregator_unavailable` until it is back or the
other worker has taken its partitions; the other worker's subscriptions answer throughout.

    .venv/bin/python -m bench.aggregator_failover [--subscriptions 40] [--events 4]
        [--runs 2] [--session-timeout 30]

Two cases, alternated run by run, each on a scratch deployment with ingest as a process
whose METERFLOW_AGGREGATOR_URL names both workers:
- `one command`: `meterflow aggregator` with METERFLOW_AGGREGATOR_WORKERS=2, worker 1
  SIGKILLed; the command starts it again alone under its instance id, and Kafka's static
  membership gives it its partitions back without a rebalance.
- `two commands`: two `meterflow aggregator` commands of one app (as on two machines), one
  SIGKILLed and not started again; the group gives its partitions to the other after
  METERFLOW_AGGREGATOR_SESSION_TIMEOUT (`--session-timeout`, the setting's default).
Every 50 ms each subscription's current usage is asked through the public API, from 2 s
before the kill until every subscription has answered 200 for 3 s (at most 180 s). Reported
per case: the subscriptions of the killed worker's partitions (by the events topic's
murmur2), how long after the kill each last failed (the longest and the median), and the
failed answers of the other worker's subscriptions (0 expected) and of any kind but 503
`aggregator_unavailable` (0 expected). Check: every subscription's totals at the end are
what was sent. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_failover.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import psutil

from bench import report
from bench.processes import (
    ServiceProcess,
    free_port,
    free_ports_in_a_row,
    pipeline,
    scratch_deployment,
    shared_partitions,
)
from bench.public_api import CUSTOMER, create_catalog, expect_ok, wait_until
from bench.usage_api import post_events
from bench.workload import Usage, WrongTotals, current_period_start, event, usage_from_meterflow
from gateway.organizations import create_organization
from meterflow.event_records import partition_for
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack

CASES = ("one command", "two commands")
TICK = 0.05  # seconds between two rounds of reads
QUIET = 3.0  # seconds every subscription must answer 200 for, after the kill
LIMIT = 180.0  # seconds after the kill before the case fails


def _aggregators(
    case: str, env: dict[str, str], port: int, tmp: Path
) -> list[tuple[ServiceProcess, int]]:
    """The aggregator processes of `case`, started, each with its first worker's web port:
    one command of two workers on `port` and `port` + 1, or two commands of one worker each
    on those ports."""
    commands = [(port, "2")] if case == CASES[0] else [(port, "1"), (port + 1, "1")]
    started = []
    for n, (web, workers) in enumerate(commands):
        own = env | {
            "METERFLOW_AGGREGATOR_PORT": str(web),
            "METERFLOW_AGGREGATOR_WORKERS": workers,
            "METERFLOW_AGGREGATOR_METRICS_PORT": str(free_port()),
            "METERFLOW_AGGREGATOR_DATA_DIR": str(tmp / f"aggregator-{n}"),
        }
        started.append((ServiceProcess("aggregator", own, tmp / f"aggregator-{n}.log"), web))
    return started


def _victim(case: str, commands: list[tuple[ServiceProcess, int]], port: int) -> psutil.Process:
    """The process to SIGKILL: worker 1 of the one command (the child listening on `port`
    + 1), or the second command."""
    if case == CASES[1]:
        return psutil.Process(commands[1][0].proc.pid)
    return next(
        child
        for child in psutil.Process(commands[0][0].proc.pid).children()
        if any(c.laddr.port == port + 1 for c in child.net_connections("tcp"))
    )


async def _read_all(
    session: aiohttp.ClientSession, url: str, subscriptions: list[str]
) -> list[tuple[int, str]]:
    """Each subscription's (status, Lago error code or "") through the public API."""

    async def one(subscription: str) -> tuple[int, str]:
        async with session.get(url, params={"external_subscription_id": subscription}) as r:
            body = await r.read()
        return r.status, "" if r.status == 200 else str(orjson.loads(body).get("code"))

    return list(await asyncio.gather(*(one(s) for s in subscriptions)))


async def measure(base: Settings, args: argparse.Namespace, case: str) -> dict[str, Any]:
    subscriptions = [f"failover-{i}" for i in range(args.subscriptions)]
    async with scratch_deployment(base) as settings:
        _, key = await create_organization(settings, "bench-failover")
        with tempfile.TemporaryDirectory() as tmp:
            port = free_ports_in_a_row(2)
            overrides = {
                "METERFLOW_AGGREGATOR_URL": f"http://127.0.0.1:{port},http://127.0.0.1:{port + 1}",
                "METERFLOW_AGGREGATOR_SESSION_TIMEOUT": str(args.session_timeout),
            }
            async with pipeline(settings, Path(tmp), ("ingest",), overrides) as services:
                commands = _aggregators(case, services.env(overrides), port, Path(tmp))
                try:
                    result = await _run(args, case, services.api_url, key, subscriptions, commands)
                finally:
                    for command, _ in commands:
                        command.stop()
    return result


async def _run(
    args: argparse.Namespace,
    case: str,
    api_url: str,
    key: str,
    subscriptions: list[str],
    commands: list[tuple[ServiceProcess, int]],
) -> dict[str, Any]:
    port = commands[0][1]
    owned = await shared_partitions([port, port + 1], args.partitions, 180)
    dead = {s for s in subscriptions if partition_for(s.encode(), args.partitions) in owned[1]}
    url = f"{api_url}/api/v1/customers/{CUSTOMER}/current_usage"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        await create_catalog(session, api_url, subscriptions)
        at = max(current_period_start().timestamp(), datetime.now(UTC).timestamp() - 3600)
        sent = [event(s, i, at) for s in subscriptions for i in range(args.events)]
        await post_events(session, api_url, sent)

        async def all_ok() -> bool:
            return all(status == 200 for status, _ in await _read_all(session, url, subscriptions))

        await wait_until(all_ok, 120, "every subscription's usage before the kill")
        for _ in range(int(2 / TICK)):
            await _read_all(session, url, subscriptions)
            await asyncio.sleep(TICK)
        victim = _victim(case, commands, port)
        victim.kill()
        killed = time.monotonic()
        last_failure: dict[str, float] = {}
        kinds: dict[str, int] = {}
        last_bad = killed
        while time.monotonic() - last_bad < QUIET:
            now = time.monotonic()
            if now - killed > LIMIT:
                raise WrongTotals(f"{case}: not every subscription answered within {LIMIT} s")
            for s, (status, code) in zip(
                subscriptions, await _read_all(session, url, subscriptions), strict=True
            ):
                if status != 200:
                    last_failure[s] = now - killed
                    kinds[f"{status} {code}"] = kinds.get(f"{status} {code}", 0) + 1
                    last_bad = now
            await asyncio.sleep(TICK)
        expected = Usage.expected(args.events)
        for s in subscriptions:
            async with session.get(url, params={"external_subscription_id": s}) as response:
                found = orjson.loads(await expect_ok(response, f"usage of {s}"))
            expected.check("meterflow", s, usage_from_meterflow(found))
    waits = sorted(last_failure[s] for s in dead if s in last_failure)
    return {
        "case": case,
        "subscriptions": len(subscriptions),
        "killed_worker_subscriptions": len(dead),
        "failed_subscriptions": len(last_failure),
        "others_failed": len(set(last_failure) - dead),
        "answers": kinds,
        "unexpected_answers": sum(
            n for kind, n in kinds.items() if kind != "503 aggregator_unavailable"
        ),
        "longest_s": round(waits[-1], 2) if waits else 0.0,
        "median_s": round(report.median(waits), 2) if waits else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=40)
    parser.add_argument("--events", type=int, default=4, help="events per subscription")
    parser.add_argument("--runs", type=int, default=2, help="runs per case")
    parser.add_argument("--session-timeout", type=float, default=30.0)
    args = parser.parse_args()
    base = Settings.from_env()
    args.partitions = base.partitions
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    results = []
    for n in range(args.runs):
        for case in CASES if n % 2 == 0 else CASES[::-1]:
            result = asyncio.run(measure(base, args, case))
            print(f"run {n + 1} {case}: {result}", flush=True)
            results.append(result)
    headers = ["case", "subscriptions down", "longest s", "median s", "others failed", "other"]
    report.print_table(
        headers,
        [
            [
                r["case"],
                f"{r['failed_subscriptions']} of {r['killed_worker_subscriptions']}",
                r["longest_s"],
                r["median_s"],
                r["others_failed"],
                r["unexpected_answers"],
            ]
            for r in results
        ],
    )
    report.write_record("aggregator_failover", machine, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
