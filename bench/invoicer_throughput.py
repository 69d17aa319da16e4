"""Throughput of the invoicer on the real Kafka and Postgres (started, or reused when
running): N closed periods are published first, then an in-process invoicer turns them into
invoices; the clock runs from its start until the last invoice is in Postgres.

    .venv/bin/python bench/invoicer_throughput.py [N] [--subscriptions 1000]

Each closed period carries two charges (standard and graduated), so each invoice has three
fees. Prints a table and writes JSON to bench/results/ (git-ignored). Uses its own topics
and database schema, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/invoicer_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench import report
from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics

START = datetime(2020, 1, 1, tzinfo=UTC)
RANGES = [
    {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "1"},
    {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"},
]


def _month(k: int) -> datetime:
    return START.replace(year=START.year + k // 12, month=k % 12 + 1)


async def _catalog(conn: asyncpg.Connection, subscriptions: int) -> dict[str, Any]:
    org, metric, plan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    standard, graduated = uuid.uuid4(), uuid.uuid4()
    await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, 'bench')", org)
    await conn.execute(
        "INSERT INTO billable_metrics (id, organization_id, code, name, aggregation_type) "
        "VALUES ($1, $2, 'api_calls', 'API calls', 'count_agg')",
        metric,
        org,
    )
    await conn.execute(
        "INSERT INTO plans (id, organization_id, code, name, interval, amount_cents, "
        "amount_currency) VALUES ($1, $2, 'startup', 'Startup', 'monthly', 1000, 'EUR')",
        plan,
        org,
    )
    await conn.executemany(
        "INSERT INTO charges (id, plan_id, billable_metric_id, position, charge_model, "
        "properties) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        [
            (standard, plan, metric, 0, "standard", '{"amount": "0.05"}'),
            (
                graduated,
                plan,
                metric,
                1,
                "graduated",
                orjson.dumps({"graduated_ranges": RANGES}).decode(),
            ),
        ],
    )
    customers = [uuid.uuid4() for _ in range(subscriptions)]
    subs = [uuid.uuid4() for _ in range(subscriptions)]
    await conn.executemany(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, currency) "
        "VALUES ($1, $2, $3, $4, 'EUR')",
        [(c, org, f"cust-{i}", i + 1) for i, c in enumerate(customers)],
    )
    await conn.executemany(
        "INSERT INTO subscriptions (id, organization_id, external_id, customer_id, plan_id, "
        "billing_time, subscription_at, started_at, status) "
        "VALUES ($1, $2, $3, $4, $5, 'calendar', $6, $6, 'active')",
        [(s, org, f"sub-{i}", customers[i], plan, START) for i, s in enumerate(subs)],
    )
    return {
        "organization_id": str(org),
        "metric": str(metric),
        "standard": str(standard),
        "graduated": str(graduated),
        "subscriptions": [str(s) for s in subs],
    }


def _closed(catalog: dict[str, Any], index: int, period: int) -> tuple[bytes, bytes]:
    subscription = catalog["subscriptions"][index]
    start, end = _month(period), _month(period + 1)
    units = 50 + (index * 31 + period * 7) % 400
    charges = [
        {
            "charge_id": catalog[model],
            "charge_model": model,
            "billable_metric_id": catalog["metric"],
            "billable_metric_code": "api_calls",
            "aggregation_type": "count_agg",
            "units": str(units),
            "events_count": units,
            "aggregation": {"type": "count_agg", "events_count": units},
        }
        for model in ("standard", "graduated")
    ]
    key = f"sub-{index}".encode()
    return key, orjson.dumps(
        {
            "period_key": f"{subscription}:{start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "organization_id": catalog["organization_id"],
            "subscription_id": subscription,
            "external_subscription_id": f"sub-{index}",
            "external_customer_id": f"cust-{index}",
            "plan_code": "startup",
            "currency": "EUR",
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "terminated": False,
            "charges": charges,
            "adjustments": [],
            "closed_at": end.isoformat(),
        }
    )


async def run(n: int, subscriptions: int) -> dict[str, Any]:
    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        subscriptions = min(subscriptions, n)
        catalog = await _catalog(conn, subscriptions)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            for i in range(n):
                key, value = _closed(catalog, i % subscriptions, i // subscriptions)
                await producer.send(settings.topics.periods_closed, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        invoicer = Invoicer(settings, InvoicerSettings(group_id=f"bench-{run_id}", metrics_port=0))
        started = time.monotonic()
        await invoicer.start()
        task = asyncio.create_task(invoicer.run())
        try:
            while (count := await conn.fetchval("SELECT count(*) FROM invoices")) < n:
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
        finally:
            invoicer.stop.set()
            await task
            await invoicer.close()
        fees = await conn.fetchval("SELECT count(*) FROM fees")
        total = await conn.fetchval("SELECT sum(total_amount_cents) FROM invoices")
    finally:
        await conn.close()
        await delete_topics(settings.bootstrap_servers, settings.topics)
        admin = await connect(settings.dsn)
        try:
            await admin.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
        finally:
            await admin.close()
    return {
        "benchmark": "invoicer_throughput",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": await report.machine_facts(base),
        "closed_periods": n,
        "subscriptions": subscriptions,
        "partitions": settings.partitions,
        "invoices": count,
        "fees": fees,
        "total_amount_cents": int(total or 0),
        "seconds": round(elapsed, 2),
        "invoices_per_second": round(count / elapsed, 1),
        "fees_per_second": round(fees / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000, help="closed periods")
    parser.add_argument("--subscriptions", type=int, default=1000)
    args = parser.parse_args()
    LocalStack.from_settings(Settings.from_env()).start()  # reuses a running Kafka and Postgres
    result = asyncio.run(run(args.n, args.subscriptions))
    rows = [
        ("invoices/s", f"{result['invoices_per_second']:,.0f}"),
        ("fees/s", f"{result['fees_per_second']:,.0f}"),
        ("invoices", f"{result['invoices']:,} ({result['fees']:,} fees)"),
        ("subscriptions x partitions", f"{result['subscriptions']} x {result['partitions']}"),
        ("duration", f"{result['seconds']} s"),
    ]
    report.print_table(["invoicer throughput", "result"], rows)
    print(f"\nwritten to {report.write_json('invoicer_throughput', result)}")


if __name__ == "__main__":
    main()
