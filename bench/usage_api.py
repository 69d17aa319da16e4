"""Current usage through the public API against the aggregator's own page, in one run.
`GET /api/v1/customers/{id}/current_usage?external_subscription_id=...` is what a client
(the official SDKs, a dashboard) calls: ingest checks the API key, reads the customer and
the subscription from Postgres, then asks the aggregator over HTTP and forwards its answer.
The aggregator's `/current-usage/{id}` asked directly is the answer's own work alone.

    .venv/bin/python -m bench.usage_api [--subscriptions 100] [--events 10]
        [--requests 2000] [--clients 1,8] [--rounds 3]

Ingest and one aggregator worker run as processes on a scratch deployment; the catalog is
made through the public API and each subscription gets `--events` events through the batch
endpoint. Then, for each count of `--clients` concurrent clients, rounds of `--requests`
requests go to one side and then the other (the order swapped every round), all
subscriptions in turn: latency p50 / p99 over the rounds, requests per second (the median
of the rounds), and the CPU each service spent per request. Every answer must be a 200
whose body is the aggregator's for that subscription (the public route forwards it
unchanged), and each subscription's totals must be what was sent; the bench stops
otherwise. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/usage_api.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import itertools
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from bench import report
from bench.processes import ServiceProcess, pipeline, scratch_deployment
from bench.public_api import CUSTOMER, create_catalog, expect_ok, wait_until
from bench.workload import Usage, WrongTotals, current_period_start, event, usage_from_meterflow
from gateway.organizations import create_organization
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack

SIDES = ("public API", "aggregator")


@dataclass(slots=True)
class Round:
    """One side's round: its latencies (seconds), its wall time, its services' CPU seconds."""

    side: str
    clients: int
    latencies: list[float]
    seconds: float
    cpu: dict[str, float]


async def timed_round(
    session: aiohttp.ClientSession,
    urls: list[tuple[str, bytes]],
    requests: int,
    clients: int,
    services: dict[str, ServiceProcess],
) -> tuple[list[float], float, dict[str, float]]:
    """`requests` GETs of `urls` in turn by `clients` concurrent clients, each answer checked
    against the body paired with its URL: the latencies, the seconds, each service's CPU."""
    queue = iter(itertools.islice(itertools.cycle(urls), requests))
    latencies: list[float] = []

    async def client() -> None:
        for url, expected in queue:
            started = time.perf_counter()
            async with session.get(url) as response:
                body = await expect_ok(response, f"GET {url}")
            latencies.append(time.perf_counter() - started)
            if body != expected:
                raise WrongTotals(f"GET {url} answered {body[:300]!r}, not {expected[:300]!r}")

    cpu = {name: proc.cpu_seconds() for name, proc in services.items()}
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return latencies, seconds, {n: p.cpu_seconds() - cpu[n] for n, p in services.items()}


async def post_events(session: aiohttp.ClientSession, api_url: str, events: list[Any]) -> None:
    for i in range(0, len(events), 100):
        body = {"events": events[i : i + 100]}
        async with session.post(f"{api_url}/api/v1/events/batch", json=body) as response:
            await expect_ok(response, "POST /api/v1/events/batch")


async def measure(base: Settings, args: argparse.Namespace) -> list[Round]:
    subscriptions = [f"usage-{i}" for i in range(args.subscriptions)]
    async with scratch_deployment(base) as settings:
        org, key = await create_organization(settings, "bench-usage-api")
        with tempfile.TemporaryDirectory() as tmp:
            async with pipeline(settings, Path(tmp)) as services:
                api_url, agg_url = services.api_url, services.aggregator_url
                headers = {"Authorization": f"Bearer {key}"}
                connector = aiohttp.TCPConnector(limit=max(args.clients))
                async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                    await create_catalog(session, api_url, subscriptions)
                    start = current_period_start().timestamp()
                    at = max(start, datetime.now(UTC).timestamp() - 3600)
                    await post_events(
                        session,
                        api_url,
                        [event(s, i, at) for s in subscriptions for i in range(args.events)],
                    )
                    direct = {
                        s: f"{agg_url}/current-usage/{s}?organization_id={org.id}"
                        for s in subscriptions
                    }
                    expected = Usage.expected(args.events)
                    bodies: dict[str, bytes] = {}

                    async def counted() -> bool:
                        for s in subscriptions:
                            async with session.get(direct[s]) as response:
                                if response.status != 200:  # 404: catalog not there yet
                                    return False
                                bodies[s] = await response.read()
                            if usage_from_meterflow(orjson.loads(bodies[s])) != expected:
                                return False
                        return True

                    await wait_until(counted, 120, f"{expected} for every subscription")
                    public = f"{api_url}/api/v1/customers/{CUSTOMER}/current_usage"
                    urls = {
                        "public API": [
                            (f"{public}?external_subscription_id={s}", bodies[s])
                            for s in subscriptions
                        ],
                        "aggregator": [(direct[s], bodies[s]) for s in subscriptions],
                    }
                    procs = {
                        "ingest": services.services["ingest"],
                        "aggregator": services.services["aggregator"],
                    }
                    rounds = []
                    for clients in args.clients:
                        for n in range(args.rounds):
                            for side in SIDES if n % 2 == 0 else SIDES[::-1]:
                                latencies, seconds, cpu = await timed_round(
                                    session, urls[side], args.requests, clients, procs
                                )
                                rounds.append(Round(side, clients, latencies, seconds, cpu))
    return rounds


def summarize(rounds: list[Round]) -> list[dict[str, Any]]:
    """One entry per (clients, side): pooled latency percentiles, the rounds' median rate and
    CPU microseconds per request."""
    found = []
    for clients in sorted({r.clients for r in rounds}):
        for side in SIDES:
            mine = [r for r in rounds if r.clients == clients and r.side == side]
            latencies = [x for r in mine for x in r.latencies]
            rates = [len(r.latencies) / r.seconds for r in mine]
            cpu_us = {
                name: round(report.median(r.cpu[name] / len(r.latencies) for r in mine) * 1e6, 1)
                for name in mine[0].cpu
            }
            found.append(
                {
                    "clients": clients,
                    "side": side,
                    "requests": len(latencies),
                    "p50_ms": round(report.p50(latencies) * 1000, 3),
                    "p99_ms": round(report.p99(latencies) * 1000, 3),
                    "requests_per_second": round(report.median(rates), 1),
                    "rounds_per_second": [round(x, 1) for x in rates],
                    "cpu_us_per_request": cpu_us,
                }
            )
    return found


HEADERS = [
    "clients",
    "side",
    "requests",
    "p50 ms",
    "p99 ms",
    "requests/s",
    "vs aggregator",
    "ingest CPU us/req",
    "aggregator CPU us/req",
]


def rows(summary: list[dict[str, Any]]) -> list[list[object]]:
    direct = {s["clients"]: s["requests_per_second"] for s in summary if s["side"] == "aggregator"}
    return [
        [
            s["clients"],
            s["side"],
            s["requests"],
            s["p50_ms"],
            s["p99_ms"],
            s["requests_per_second"],
            f"{report.ratio(s['requests_per_second'], direct[s['clients']]):.2f}x",
            s["cpu_us_per_request"]["ingest"],
            s["cpu_us_per_request"]["aggregator"],
        ]
        for s in summary
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--events", type=int, default=10, help="events per subscription")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument(
        "--clients",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 8],
        help="concurrent clients, each count in turn (comma-separated)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side and count")
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    summary = summarize(asyncio.run(measure(base, args)))
    report.print_table(HEADERS, rows(summary))
    report.write_record("usage_api", machine, {"load": vars(args), "results": summary})


if __name__ == "__main__":
    main()
