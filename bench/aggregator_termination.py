"""Termination to invoice: the time from `DELETE /api/v1/subscriptions/{id}` to the final
invoice being readable through `GET /api/v1/invoices` (issue 11: at most 5 s, p99), with
ingest, the aggregator and the invoicer as real processes on their default closing settings.

    .venv/bin/python -m bench.aggregator_termination [--terminations 20] [--runs 3]
        [--rate 500] [--events 50] [--gap 0.3]

Each run starts the three services on topics and a schema of its own, creates a plan and
one customer with one subscription per termination through the public API, and keeps a
background load of `--rate` events/s (batches of 100 to other subscriptions) flowing, so the
stream is not idle. Then, one after another: `--events` events for the subscription (each
answered 200), at once its DELETE, then `GET /api/v1/invoices?external_customer_id=...` every
20 ms until the invoice is there; the delay counts from just before the DELETE was sent.
Checks: every final invoice bills exactly the subscription's events. Prints per run the
median, p99 and max, and over all runs the median of the run medians and the p99 of all
samples; writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_termination.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from bench import report
from bench.processes import pipeline, scratch_deployment
from bench.public_api import api, expect_ok
from bench.workload import COUNT_CODE, WrongTotals, count_event, current_period_start
from gateway.organizations import create_organization
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack

PLAN = "bench-term-plan"
POLL_STEP = 0.02
INVOICE_TIMEOUT = 60.0


@contextlib.asynccontextmanager
async def scratch_api(
    base: Settings, organization: str
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The pipeline (ingest, aggregator, invoicer) on a scratch deployment, and a session of a new
    organization's API key: yields (session, the API's base URL)."""
    async with scratch_deployment(base) as settings:
        _org, key = await create_organization(settings, organization)
        with tempfile.TemporaryDirectory() as tmp:
            names = ("ingest", "aggregator", "invoicer")
            async with pipeline(settings, Path(tmp), names) as services:
                headers = {"Authorization": f"Bearer {key}"}
                timeout = aiohttp.ClientTimeout(total=30)
                async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
                    yield session, services.api_url


async def create_count_plan(
    session: aiohttp.ClientSession, url: str, code: str, interval: str
) -> None:
    """The count metric, and plan `code` billing it at 0.01 per event (one cent each, so an
    invoice's fees in cents are its events) without a fixed fee."""
    metric = await api(
        session,
        url,
        "/api/v1/billable_metrics",
        "billable_metric",
        {"name": COUNT_CODE, "code": COUNT_CODE, "aggregation_type": "count_agg"},
    )
    charge = {
        "billable_metric_id": metric["lago_id"],
        "charge_model": "standard",
        "properties": {"amount": "0.01"},
    }
    plan = {"name": code, "code": code, "interval": interval, "amount_cents": 0}
    plan |= {"amount_currency": "USD", "pay_in_advance": False, "charges": [charge]}
    await api(session, url, "/api/v1/plans", "plan", plan)


async def subscribe_customers(
    session: aiohttp.ClientSession,
    url: str,
    subscriptions: int,
    *,
    prefix: str,
    plan: str,
    billing_time: str,
    subscription_at: datetime,
    timezone: str | None = None,
) -> None:
    """Customers `<prefix>cust-<i>` (in `timezone`, else the organization's), each with
    subscription `<prefix>sub-<i>` to `plan`, for i below `subscriptions`."""
    for i in range(subscriptions):
        customer = {"external_id": f"{prefix}cust-{i}", "name": f"Bench {i}", "currency": "USD"}
        if timezone is not None:
            customer["timezone"] = timezone
        await api(session, url, "/api/v1/customers", "customer", customer)
        body = {"external_customer_id": f"{prefix}cust-{i}", "plan_code": plan}
        body |= {"external_id": f"{prefix}sub-{i}", "billing_time": billing_time}
        body["subscription_at"] = subscription_at.isoformat()
        await api(session, url, "/api/v1/subscriptions", "subscription", body)


async def create_catalog(session: aiohttp.ClientSession, url: str, subscriptions: int) -> None:
    await create_count_plan(session, url, PLAN, "monthly")
    start = current_period_start()
    await subscribe_customers(
        session,
        url,
        subscriptions,
        prefix="",
        plan=PLAN,
        billing_time="calendar",
        subscription_at=start,
    )


async def background(session: aiohttp.ClientSession, url: str, rate: float) -> None:
    """Batches of 100 count events at `rate` events/s for subscription sub-bg, until
    cancelled."""
    n = 0
    while True:
        tick = time.monotonic()
        stamp = time.time()
        made = [count_event(f"bg-{i}", "sub-bg", stamp) for i in range(n, n + 100)]
        n += 100
        async with session.post(url, data=orjson.dumps({"events": made})) as response:
            await expect_ok(response, "background batch")
        await asyncio.sleep(max(0.0, tick + 100 / rate - time.monotonic()))


async def terminate_and_wait(
    session: aiohttp.ClientSession, url: str, i: int, events: int
) -> float:
    stamp = time.time()
    made = [count_event(f"term-{i}-{k}", f"sub-{i}", stamp) for k in range(events)]
    async with session.post(f"{url}/api/v1/events/batch", json={"events": made}) as response:
        await expect_ok(response, "events of the subscription to terminate")
    started = time.perf_counter()
    async with session.delete(f"{url}/api/v1/subscriptions/sub-{i}") as response:
        await expect_ok(response, "DELETE subscription")
    query = f"{url}/api/v1/invoices?external_customer_id=cust-{i}"
    while True:
        async with session.get(query) as response:
            found = orjson.loads(await expect_ok(response, "GET invoices"))
        elapsed = time.perf_counter() - started
        if found["invoices"]:
            break
        if elapsed > INVOICE_TIMEOUT:
            raise WrongTotals(f"no invoice for sub-{i} {INVOICE_TIMEOUT}s after its DELETE")
        await asyncio.sleep(POLL_STEP)
    invoice = found["invoices"][0]
    billed = sum(int(f["amount_cents"]) for f in invoice.get("fees") or [])
    total = int(invoice.get("fees_amount_cents", billed) or billed)
    if total != events:  # 0.01 per event, in cents: one cent each
        raise WrongTotals(f"sub-{i}: the invoice bills {total} cents for {events} events")
    return elapsed


async def run(base: Settings, args: argparse.Namespace, index: int) -> dict[str, Any]:
    delays: list[float] = []
    async with scratch_api(base, "bench-termination") as (session, url):
        await create_catalog(session, url, args.terminations)
        bg = {"external_customer_id": "cust-0", "plan_code": PLAN}
        body = bg | {"external_id": "sub-bg", "billing_time": "calendar"}
        body["subscription_at"] = current_period_start().isoformat()
        await api(session, url, "/api/v1/subscriptions", "subscription", body)
        await asyncio.sleep(2)  # the catalog reaching the aggregator
        load = asyncio.create_task(background(session, f"{url}/api/v1/events/batch", args.rate))
        try:
            for i in range(args.terminations):
                delays.append(await terminate_and_wait(session, url, i, args.events))
                await asyncio.sleep(args.gap)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    return {
        "run": index,
        "terminations": len(delays),
        "median_ms": round(report.median(delays) * 1000, 1),
        "p99_ms": round(report.p99(delays) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "delays_ms": [round(d * 1000, 1) for d in delays],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--terminations", type=int, default=20, help="per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="background events/s")
    parser.add_argument("--events", type=int, default=50, help="per terminated subscription")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between terminations")
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    runs = [asyncio.run(run(base, args, i + 1)) for i in range(args.runs)]
    every = [d / 1000 for r in runs for d in r["delays_ms"]]
    overall = {
        "median_of_run_medians_ms": round(report.median(r["median_ms"] for r in runs), 1),
        "p99_all_ms": round(report.p99(every) * 1000, 1),
        "max_all_ms": round(max(every) * 1000, 1),
    }
    report.print_table(
        ["run", "terminations", "median ms", "p99 ms", "max ms"],
        [
            *[
                [r["run"], r["terminations"], r["median_ms"], r["p99_ms"], r["max_ms"]]
                for r in runs
            ],
            [
                "all",
                len(every),
                overall["median_of_run_medians_ms"],
                overall["p99_all_ms"],
                overall["max_all_ms"],
            ],
        ],
    )
    report.write_record(
        "aggregator_termination",
        machine,
        {
            "settings": vars(args),
            "overall": overall,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
