"""Throughput of the invoicer on the real Kafka and Postgres (started, or reused when
running): N closed periods are published first, then an in-process invoicer turns them into
invoices; batched (the default round size: many periods per read and per write) against the
same invoicer invoicing each period on its own (`round_size=1`: a read and a write per
period), alternating which goes first, in the same run.

    .venv/bin/python -m bench.invoicer_throughput [N] [--subscriptions 1000] [--runs 3]
        [--round-size 1000] [--side both|batched|per-period] [--profile DIR] [--analyzed]

Each closed period carries two charges (standard and graduated), so each invoice has three
fees; a quarter of the customers have a fixed-amount coupon, a quarter a wallet of prepaid
credits and a tenth a credit note, so their invoices consume them (guarded writes). The rate
counts from the first invoice in Postgres to the last (the consumer group's join before it is
reported apart, as `end to end`). Checks: N invoices, one per period, each customer's invoices
numbered 1..k, and every cent the coupons, wallets and credit notes lost is on an invoice;
each run prints a checksum of every money row it wrote (`bench.invoice_checksum`).
Since wall-clock rates swing with the machine's load, each run also reports CPU per invoice:
the invoicer's (this process's CPU time over the run; the bench's own polling is a few
queries a second) and its Postgres backends' (found by the application_name the bench gives
the invoicer's pool; psutil over their whole life). The ratio row's CPU column is per period
/ batched. `--profile DIR` records each side's first run with py-spy (raw stacks) and
reports its top frames. `--analyzed`: the schema ANALYZEd with the catalog in and no invoice
yet (a new deployment's statistics, which plans keep until the next ANALYZE). The bench's
process collects garbage as `meterflow invoicer` does (`collect_less_often`). Prints a table
of medians and writes JSON to bench/results/ (git-ignored). Uses its own topics and database
schema, removed afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/invoicer_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import psutil
from aiokafka import AIOKafkaProducer

from bench import report
from bench.invoice_checksum import invoice_checksum
from bench.processes import cpu_seconds
from bench.workload import WrongTotals
from invoicer.consumer import Invoicer
from invoicer.service import YOUNG_COLLECTION_EVERY
from invoicer.settings import InvoicerSettings
from meterflow.collector import collect_less_often
from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics

START = datetime(2020, 1, 1, tzinfo=UTC)
RANGES = [
    {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "1"},
    {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"},
]
BATCHED, PER_PERIOD = "batched", "per period"
HEADERS = ["invoicer, invoices/s (median)", "first to last", "end to end"]
HEADERS += ["invoicer CPU us/invoice", "Postgres CPU us/invoice", "runs"]
_BILLED = "SELECT count(*) FROM invoices WHERE period_key NOT LIKE 'seed-%'"
PY_SPY = Path(sys.executable).with_name("py-spy")


def _month(k: int) -> datetime:
    return START.replace(year=START.year + k // 12, month=k % 12 + 1)


async def _catalog(conn: asyncpg.Connection, subscriptions: int) -> dict[str, Any]:
    org, metric, plan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    standard, graduated, coupon = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
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
    graduated_properties = orjson.dumps({"graduated_ranges": RANGES}).decode()
    await conn.executemany(
        "INSERT INTO charges (id, plan_id, billable_metric_id, position, charge_model, "
        "properties) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        [
            (standard, plan, metric, 0, "standard", '{"amount": "0.05"}'),
            (graduated, plan, metric, 1, "graduated", graduated_properties),
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
    await _credits(conn, org, coupon, customers, subs[0])
    return {
        "organization_id": str(org),
        "metric": str(metric),
        "standard": str(standard),
        "graduated": str(graduated),
        "subscriptions": [str(s) for s in subs],
    }


async def _credits(
    conn: asyncpg.Connection,
    org: uuid.UUID,
    coupon: uuid.UUID,
    customers: list[uuid.UUID],
    subscription: uuid.UUID,
) -> None:
    """A coupon of 25.00 (used up over a few invoices) for a quarter of the customers, a
    wallet of 1,000.00 for another quarter, a credit note of 15.00 for a tenth."""
    await conn.execute(
        "INSERT INTO coupons (id, organization_id, code, name, coupon_type, amount_cents, "
        "amount_currency, frequency) VALUES ($1, $2, 'welcome', 'Welcome', 'fixed_amount', "
        "2500, 'EUR', 'once')",
        coupon,
        org,
    )
    await conn.executemany(
        "INSERT INTO applied_coupons (id, organization_id, coupon_id, customer_id, "
        "amount_cents, amount_currency, frequency, amount_cents_remaining) "
        "VALUES ($1, $2, $3, $4, 2500, 'EUR', 'once', 2500)",
        [(uuid.uuid4(), org, coupon, c) for c in customers[1::4]],
    )
    await conn.executemany(
        "INSERT INTO wallets (id, organization_id, customer_id, currency, rate_amount, "
        "balance_cents) VALUES ($1, $2, $3, 'EUR', 1, 100000)",
        [(uuid.uuid4(), org, c) for c in customers[2::4]],
    )
    # A credit note needs the invoice it credits: one earlier invoice (of no period we bill).
    noted = customers[3::10]
    invoices = [uuid.uuid4() for _ in noted]
    await conn.executemany(
        "INSERT INTO invoices (id, organization_id, customer_id, subscription_id, period_key, "
        "sequential_id, number, status, currency, issuing_date, period_start, period_end, "
        "fees_amount_cents, sub_total_excluding_taxes_amount_cents, "
        "sub_total_including_taxes_amount_cents, total_amount_cents) VALUES ($1, $2, $3, $4, "
        "$5, 0, $5, 'finalized', 'EUR', '2019-12-01', $6, $6, 1500, 1500, 1500, 1500)",
        [
            (i, org, c, subscription, f"seed-{i}", START)
            for i, c in zip(invoices, noted, strict=True)
        ],
    )
    await conn.executemany(
        "INSERT INTO credit_notes (id, organization_id, customer_id, invoice_id, sequential_id, "
        "number, reason, credit_status, currency, issuing_date, taxes_amount_cents, "
        "precise_taxes_amount_cents, coupons_adjustment_amount_cents, "
        "precise_coupons_adjustment_amount_cents, sub_total_excluding_taxes_amount_cents, "
        "total_amount_cents, credit_amount_cents, refund_amount_cents, balance_amount_cents) "
        "VALUES ($1, $2, $3, $4, 1, $5, 'other', 'available', 'EUR', '2019-12-01', 0, 0, 0, 0, "
        "1500, 1500, 1500, 0, 1500)",
        [(uuid.uuid4(), org, c, i, f"CN-{i}") for c, i in zip(noted, invoices, strict=True)],
    )


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


async def _check(conn: asyncpg.Connection, n: int) -> dict[str, int]:
    """Raise WrongTotals unless every period has one invoice, numbered in sequence, and what
    the credits lost equals what the invoices took; answer those totals."""
    row = await conn.fetchrow(
        "SELECT count(*) AS invoices, count(DISTINCT period_key) AS periods, "
        "coalesce(sum(coupons_amount_cents), 0) AS coupons, "
        "coalesce(sum(prepaid_credit_amount_cents), 0) AS prepaid, "
        "coalesce(sum(credit_notes_amount_cents), 0) AS credit_notes "
        "FROM invoices WHERE period_key NOT LIKE 'seed-%'"
    )
    gaps = await conn.fetchval(
        "SELECT count(*) FROM (SELECT customer_id, max(sequential_id) AS top, count(*) AS k "
        "FROM invoices WHERE period_key NOT LIKE 'seed-%' GROUP BY customer_id) s "
        "WHERE top <> k"
    )
    lost = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(2500 - amount_cents_remaining), 0) FROM applied_coupons) "
        "AS coupons, (SELECT coalesce(sum(consumed_amount_cents), 0) FROM wallets) AS prepaid, "
        "(SELECT coalesce(sum(1500 - balance_amount_cents), 0) FROM credit_notes) "
        "AS credit_notes"
    )
    assert row is not None and lost is not None
    if (row["invoices"], row["periods"], gaps) != (n, n, 0):
        raise WrongTotals(f"{row['invoices']} invoices, {row['periods']} periods, {gaps} gaps")
    for what in ("coupons", "prepaid", "credit_notes"):
        if row[what] != lost[what]:
            raise WrongTotals(f"{what}: invoices took {row[what]}, credits lost {lost[what]}")
    return {what: int(row[what]) for what in ("coupons", "prepaid", "credit_notes")}


@contextlib.asynccontextmanager
async def _py_spy(output: Path | None) -> AsyncIterator[None]:
    """py-spy recording this process (raw stacks) while the block runs, if asked."""
    if output is None:
        yield
        return
    spy = subprocess.Popen(
        [PY_SPY, "record", "-r", "100", "-f", "raw", "-o", output, "--pid", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(1.0)  # attached before the clock starts
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        await asyncio.to_thread(spy.wait, 30)


def _invoicer_settings(settings: Settings, run_id: str) -> tuple[Settings, str]:
    """The invoicer's settings with its Postgres connections named, so the bench finds its
    backends (and their CPU) in pg_stat_activity among the other users of the stack."""
    name = f"bench-invoicer-{run_id}"
    dsn = settings.dsn
    return replace(
        settings, database_url=f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}"
    ), name


async def _backend_cpu(conn: asyncpg.Connection, application_name: str) -> float:
    """CPU seconds (user + system) the invoicer's Postgres backends used since they started
    (they are the invoicer's pool: opened after the clock started, still open)."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
    )
    total = 0.0
    for row in pids:
        with contextlib.suppress(psutil.Error):
            total += cpu_seconds(row["pid"])
    return total


def top_frames(raw: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions most often on the stack (inclusive share of the samples, event loop
    and benchmark frames left out), from py-spy's raw output."""
    seen: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        total += int(samples)
        for frame in {f.rsplit(":", 1)[0] + ")" for f in stack.split(";")}:
            seen[frame] += int(samples)
    skip = ("asyncio/", "<frozen", "runpy", "bench/", "<module>", "Invoicer.run ")
    found = [(f, round(100 * n / total, 1)) for f, n in seen.most_common() if total]
    return [(f, share) for f, share in found if not any(s in f for s in skip)][:count]


async def run(
    n: int,
    subscriptions: int,
    *,
    round_size: int | None = None,
    profile: Path | None = None,
    analyzed: bool = False,
) -> dict[str, Any]:
    """One measurement on topics and a schema of its own; `round_size` None is the
    invoicer's default."""
    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    settings = replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    conn = await connect(settings.dsn, schema=settings.db_schema)
    config = InvoicerSettings(group_id=f"bench-{run_id}", metrics_port=0)
    if round_size is not None:
        config = replace(config, round_size=round_size)
    try:
        subscriptions = min(subscriptions, n)
        catalog = await _catalog(conn, subscriptions)
        if analyzed:
            await conn.execute("ANALYZE")
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
        invoicer_settings, application_name = _invoicer_settings(settings, run_id)
        invoicer = Invoicer(invoicer_settings, config)
        async with _py_spy(profile):
            started, cpu_started = time.monotonic(), time.process_time()
            await invoicer.start()
            task = asyncio.create_task(invoicer.run())
            first: tuple[float, int] | None = None
            try:
                while (count := await conn.fetchval(_BILLED)) < n:
                    if task.done():
                        task.result()
                    if first is None and count:
                        first = (time.monotonic(), count)
                    await asyncio.sleep(0.05)
                finished, cpu = time.monotonic(), time.process_time() - cpu_started
                database_cpu = await _backend_cpu(conn, application_name)
            finally:
                invoicer.stop.set()
                await task
                await invoicer.close()
        assert first is not None
        taken = await _check(conn, n)
        fees = await conn.fetchval("SELECT count(*) FROM fees")
        checksum = await invoice_checksum(conn)
    finally:
        await conn.close()
        await delete_topics(settings.bootstrap_servers, settings.topics)
        admin = await connect(settings.dsn)
        try:
            await admin.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
        finally:
            await admin.close()
    steady = finished - first[0]
    return {
        "side": PER_PERIOD if config.round_size == 1 else BATCHED,
        "round_size": config.round_size,
        "batch_size": config.batch_size,
        "closed_periods": n,
        "subscriptions": subscriptions,
        "partitions": settings.partitions,
        "invoices": n,
        "fees": fees,
        "credits_taken_cents": taken,
        "checksum": checksum,
        "seconds": round(steady, 3),
        "seconds_end_to_end": round(finished - started, 3),
        "invoices_per_second": round((n - first[1]) / steady, 1) if steady else None,
        "end_to_end_per_second": round(n / (finished - started), 1),
        "fees_per_second": round(fees / (finished - started), 1),
        "invoicer_cpu_us_per_invoice": round(cpu / n * 1e6, 1),
        "postgres_cpu_us_per_invoice": round(database_cpu / n * 1e6, 1),
        "load_average_after": report.load_average(),
        "top_frames": top_frames(profile) if profile is not None and profile.exists() else None,
    }


async def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for i in range(args.runs):
        sides = [
            (side, size)
            for side, size in ((BATCHED, args.round_size), (PER_PERIOD, 1))
            if args.side in ("both", side.replace(" ", "-"))
        ]
        for side, size in sides if i % 2 == 0 else sides[::-1]:
            profile = None
            if args.profile is not None and i == 0:
                args.profile.mkdir(parents=True, exist_ok=True)
                name = f"invoicer-{side.replace(' ', '-')}-{report.timestamp()}.txt"
                profile = args.profile / name
            result = await run(
                args.n, args.subscriptions, round_size=size, profile=profile, analyzed=args.analyzed
            )
            print(
                f"run {i + 1} {side}: {result['invoices_per_second']:,.0f} invoices/s "
                f"(end to end {result['end_to_end_per_second']:,.0f}/s, CPU per invoice: "
                f"invoicer {result['invoicer_cpu_us_per_invoice']:,.0f} us, "
                f"Postgres {result['postgres_cpu_us_per_invoice']:,.0f} us, "
                f"load {result['load_average_after']}, checksum {result['checksum'][:16]})",
                flush=True,
            )
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000, help="closed periods")
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs per side")
    parser.add_argument("--round-size", type=int, default=InvoicerSettings().round_size)
    parser.add_argument(
        "--side", choices=("both", "batched", "per-period"), default="both", help="sides to run"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    parser.add_argument("--analyzed", action="store_true", help="ANALYZE before any invoice")
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    collect_less_often(YOUNG_COLLECTION_EVERY)
    results = asyncio.run(compare(args))
    medians = {
        side: {
            key: report.median(r[key] for r in results if r["side"] == side)
            for key in (
                "invoices_per_second",
                "end_to_end_per_second",
                "invoicer_cpu_us_per_invoice",
                "postgres_cpu_us_per_invoice",
            )
        }
        for side in (BATCHED, PER_PERIOD)
    }
    rows: list[tuple[str, float, float | None, float | None, float | None, str]] = [
        (
            f"{side} (round {args.round_size if side == BATCHED else 1})",
            medians[side]["invoices_per_second"],
            medians[side]["end_to_end_per_second"],
            medians[side]["invoicer_cpu_us_per_invoice"],
            medians[side]["postgres_cpu_us_per_invoice"],
            ", ".join(f"{r['invoices_per_second']:,.0f}" for r in results if r["side"] == side),
        )
        for side in (BATCHED, PER_PERIOD)
    ]
    ratio = report.ratio(
        medians[BATCHED]["invoices_per_second"], medians[PER_PERIOD]["invoices_per_second"]
    )
    cpu_ratio = report.ratio(
        medians[PER_PERIOD]["invoicer_cpu_us_per_invoice"],
        medians[BATCHED]["invoicer_cpu_us_per_invoice"],
    )
    rows.append(("batched / per period", ratio, None, cpu_ratio, None, "medians"))
    report.print_table(HEADERS, rows)
    for r in results:
        for frame, share in r["top_frames"] or []:
            print(f"  {r['side']} run: {share:5.1f}% {frame}")
    report.write_record(
        "invoicer_throughput",
        machine,
        {
            "closed_periods": args.n,
            "subscriptions": args.subscriptions,
            "runs": args.runs,
            "medians": medians,
            "ratio_batched_to_per_period": ratio,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
