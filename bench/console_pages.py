"""Console page latency with 10,000 customers: a `meterflow ingest` server (which serves the
console) in its own process on the real Kafka and Postgres, a signed-in client in this one
asking each page in turn; the median, p90 and p99 of each page's answer time.

    .venv/bin/python bench/console_pages.py [--customers 10000] [--requests 100]

The customers are written straight into Postgres (as the API writes them: attributes,
sequential ids, three timezones), then one of them gets a plan through the API, so the
customer view lists a subscription. Target: a median under 50 ms for the customers list and
the customer view. Prints a table and writes JSON to bench/results/ (git-ignored). Uses its
own topics and database schema, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/console_pages.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import re
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench import report
from bench.ingest_batch import _server, _server_env, _setup, _teardown
from bench.processes import cpu_seconds
from console.users import create_user
from meterflow.db import connect
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack

TARGET_MS = 50.0
PASSWORD = "benchmark password"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _fill(settings: Settings, customers: int) -> str:
    """`customers` customers of the benchmark's organization; returns its id."""
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        org = await conn.fetchval("SELECT id FROM organizations")
        await conn.execute(
            "INSERT INTO customers (id, organization_id, external_id, sequential_id, name, "
            "email, currency, timezone, attributes, created_at) "
            "SELECT gen_random_uuid(), $1, 'cust-' || g, g, 'Customer ' || g, "
            "'billing' || g || '@example.test', 'USD', "
            "(ARRAY['Europe/Paris', 'Asia/Kolkata', 'America/New_York', NULL])[1 + g % 4], "
            "jsonb_build_object('name', 'Customer ' || g, 'email', "
            "'billing' || g || '@example.test', 'legal_name', 'Legal ' || g || ' Ltd', "
            "'city', 'City ' || (g % 97)), now() - g * interval '1 minute' "
            "FROM generate_series(1, $2) AS g",
            org,
            customers,
        )
        await conn.execute("ANALYZE customers")
        return str(org)
    finally:
        await conn.close()


async def _api(http: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _subscribe(http: aiohttp.ClientSession, base: str, key: str, customer: str) -> None:
    metric = await _api(
        http,
        f"{base}/api/v1/billable_metrics",
        key,
        {"billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}},
    )
    charge = {
        "billable_metric_id": metric["billable_metric"]["lago_id"],
        "charge_model": "standard",
        "properties": {"amount": "0.01"},
    }
    plan = {"name": "Pro", "code": "pro", "interval": "monthly", "amount_cents": 4900}
    plan |= {"amount_currency": "USD", "charges": [charge]}
    await _api(http, f"{base}/api/v1/plans", key, {"plan": plan})
    subscription = {"external_customer_id": customer, "plan_code": "pro", "external_id": "sub-1"}
    await _api(http, f"{base}/api/v1/subscriptions", key, {"subscription": subscription})


async def _sign_in(http: aiohttp.ClientSession, base: str, email: str) -> None:
    async with http.get(f"{base}/console/sign-in") as page:
        token = _CSRF.search(await page.text())
    assert token is not None
    form = {"csrf_token": token.group(1), "email": email, "password": PASSWORD}
    async with http.post(f"{base}/console/sign-in", data=form) as response:
        assert response.url.path == "/console/customers", "signed in"


async def _customer_url(http: aiohttp.ClientSession, base: str, external_id: str) -> str:
    async with http.get(f"{base}/console/customers", params={"q": external_id}) as page:
        found = re.search(r'href="(/console/customers/[0-9a-f-]{36})"', await page.text())
    assert found is not None
    return found.group(1)


async def _time(
    http: aiohttp.ClientSession, url: str, requests: int, pid: int
) -> tuple[list[float], float]:
    """Each request's answer time, and the server's CPU seconds per request (which a busy
    shared machine disturbs far less than the answer time)."""
    for _ in range(5):  # warm-up: pool connections, template compilation
        async with http.get(url) as response:
            await response.read()
    out = []
    cpu = cpu_seconds(pid)
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200, url
        out.append(time.perf_counter() - started)
    return out, (cpu_seconds(pid) - cpu) / requests


async def _measure(
    base: str, key: str, email: str, requests: int, pid: int
) -> dict[str, tuple[list[float], float]]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        await _subscribe(http, base, key, "cust-5000")
        await _sign_in(http, base, email)
        customer = base + await _customer_url(http, base, "cust-5000")
        pages = {
            "customers list (page 1, 20 rows)": f"{base}/console/customers",
            "customers list (page 200, 50 rows)": f"{base}/console/customers?page=200&per_page=50",
            "customers list (search 'legal 77')": f"{base}/console/customers?q=legal+77",
            "customer view (Overview)": customer,
            "customer edit form (every timezone)": f"{customer}/edit",
        }
        return {name: await _time(http, url, requests, pid) for name, url in pages.items()}


def run(customers: int, requests: int) -> dict[str, Any]:
    base_settings = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(
        base_settings, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}"
    )
    email = f"bench-{run_id}@example.test"
    try:
        key = asyncio.run(_setup(settings))
        org = asyncio.run(_fill(settings, customers))
        asyncio.run(create_user(settings, org, email, PASSWORD))
        with _server(_server_env(settings, 1), None) as (url, pid):
            timings = asyncio.run(_measure(url, key, email, requests, pid))
    finally:
        asyncio.run(_teardown(settings))
    pages = {
        name: {
            "median_ms": round(report.median(values) * 1000, 2),
            "p90_ms": round(report.percentile(values, 90) * 1000, 2),
            "p99_ms": round(report.p99(values) * 1000, 2),
            "server_cpu_ms_per_request": round(cpu * 1000, 2),
            "requests": len(values),
        }
        for name, (values, cpu) in timings.items()
    }
    return {
        "benchmark": "console_pages",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": asyncio.run(report.machine_facts(base_settings)),
        "customers": customers,
        "target_median_ms": TARGET_MS,
        "pages": pages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per page")
    args = parser.parse_args()
    LocalStack.from_settings(Settings.from_env()).start()  # reuses a running Kafka and Postgres
    result = run(args.customers, args.requests)
    rows = [
        (
            name,
            page["median_ms"],
            page["p90_ms"],
            page["p99_ms"],
            page["server_cpu_ms_per_request"],
            "yes" if page["median_ms"] < TARGET_MS else "NO",
        )
        for name, page in result["pages"].items()
    ]
    print(f"{result['customers']:,} customers, {args.requests} requests per page")
    headers = ["page", "median ms", "p90 ms", "p99 ms", "server CPU ms", f"< {TARGET_MS:.0f} ms"]
    report.print_table(headers, rows)
    print(f"load average at start: {result['machine']['load_average_at_start']}")
    print(f"\nwritten to {report.write_json('console_pages', result)}")


if __name__ == "__main__":
    main()
