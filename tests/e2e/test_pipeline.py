"""The whole pipeline through running services, driven by Lago's own Python client:
ingest, aggregator and invoicer as separate processes on the real Kafka and Postgres.

A customer in Asia/Tokyo subscribes to a plan with a base fee and three charge models; its
usage arrives over HTTP (a batch sent twice, as a retrying client would); current usage is
checked; the subscription is terminated; the invoice is read back through the API and every
amount equals the hand computation below.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lago_python_client.client import Client
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Event,
    Plan,
    Subscription,
)

from gateway.organizations import create_organization
from meterflow.settings import Settings
from support.services import running_services

TOKYO = ZoneInfo("Asia/Tokyo")
PLAN_CENTS = 10_000


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    """ingest, aggregator and invoicer running on this test's topics and schema."""
    with running_services(
        settings,
        tmp_path,
        ("ingest", "aggregator", "invoicer"),
        METERFLOW_AGGREGATOR_CLOCK_SKEW="0",
        METERFLOW_AGGREGATOR_CLOSE_INTERVAL="0.5",
    ) as ports:
        yield ports


async def eventually(probe: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    """Call `probe` (in a thread: Lago's client is synchronous) until it returns non-None."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(probe)
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"{probe.__name__} gave nothing for {timeout}s"
        await asyncio.sleep(0.5)


def cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def test_usage_to_invoice_through_the_running_services(
    settings: Settings, pipeline: dict[str, int]
) -> None:
    _, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=f"http://127.0.0.1:{pipeline['api']}")

    now_tokyo = datetime.now(TOKYO)
    month_start = now_tokyo.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    await asyncio.to_thread(
        lago.customers.create,
        Customer(external_id="cust-tokyo", name="Tokyo KK", currency="USD", timezone="Asia/Tokyo"),
    )
    metrics = {}
    for code, aggregation, field in (
        ("api_calls", "count_agg", None),
        ("storage", "sum_agg", "gb"),
        ("seats", "max_agg", "seats"),
    ):
        metrics[code] = await asyncio.to_thread(
            lago.billable_metrics.create,
            BillableMetric(name=code, code=code, aggregation_type=aggregation, field_name=field),
        )
    await asyncio.to_thread(
        lago.plans.create,
        Plan(
            name="Team",
            code="team",
            interval="monthly",
            amount_cents=PLAN_CENTS,
            amount_currency="USD",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=metrics["api_calls"].lago_id,
                        charge_model="standard",
                        properties={"amount": "0.05"},
                    ),
                    Charge(
                        billable_metric_id=metrics["storage"].lago_id,
                        charge_model="graduated",
                        properties={
                            "graduated_ranges": [
                                {
                                    "from_value": 0,
                                    "to_value": 10,
                                    "per_unit_amount": "1",
                                    "flat_amount": "2",
                                },
                                {
                                    "from_value": 11,
                                    "to_value": None,
                                    "per_unit_amount": "0.5",
                                    "flat_amount": "0",
                                },
                            ]
                        },
                    ),
                    Charge(
                        billable_metric_id=metrics["seats"].lago_id,
                        charge_model="package",
                        properties={"amount": "10", "package_size": 5, "free_units": 2},
                    ),
                ]
            ),
        ),
    )
    await asyncio.to_thread(
        lago.subscriptions.create,
        Subscription(
            external_customer_id="cust-tokyo",
            plan_code="team",
            external_id="sub-tokyo",
            billing_time="calendar",
            subscription_at=month_start.astimezone(UTC).isoformat(),
        ),
    )

    stamp = int((datetime.now(UTC) - timedelta(seconds=30)).timestamp())

    def event(i: int, code: str, **properties: int) -> Event:
        return Event(
            transaction_id=f"{code}-{i}",
            external_subscription_id="sub-tokyo",
            code=code,
            timestamp=stamp + i % 20,
            properties=properties or None,
        )

    calls = [event(i, "api_calls") for i in range(120)]
    for chunk in (calls[:60], calls[60:], calls[60:]):  # the second batch is retried
        await asyncio.to_thread(lago.events.batch_create, BatchEvent(events=chunk))
    for i, gb in enumerate((3, 7, 5, 10)):
        await asyncio.to_thread(lago.events.create, event(i, "storage", gb=gb))
    for i, seats in enumerate((5, 13, 8)):
        await asyncio.to_thread(lago.events.create, event(i, "seats", seats=seats))
    await asyncio.to_thread(lago.events.create, event(2, "seats", seats=8))  # a resend

    # By hand: 120 calls x 0.05 = 6.00; storage 25 GB graduated: 10 x 1 + 2 flat, then
    # 25 - 11 + 1 = 15 x 0.50 = 7.50, so 19.50; seats max 13, 2 free: ceil(11 / 5) = 3
    # packages x 10 = 30.00.
    expected_units = {"api_calls": "120", "storage": "25", "seats": "13"}
    expected_events = {"api_calls": 120, "storage": 4, "seats": 3}
    expected_cents = {"api_calls": 600, "storage": 1950, "seats": 3000}

    def usage_complete() -> Any:
        usage = lago.customers.current_usage("cust-tokyo", "sub-tokyo")
        seen = {c.billable_metric.code: (c.units, c.events_count) for c in usage.charges_usage}
        wanted = {code: (expected_units[code], expected_events[code]) for code in seen}
        return usage if seen == wanted and len(seen) == 3 else None

    # Counts can only reach the expected ones and stay there: duplicates add nothing.
    usage = await eventually(usage_complete)
    assert {c.billable_metric.code: c.amount_cents for c in usage.charges_usage} == expected_cents
    assert usage.amount_cents == 5550
    assert usage.from_datetime == month_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Projected to the month's end: counts and sums at their pace so far, priced again; the
    # seats (a maximum) stay a level.
    projected = await asyncio.to_thread(lago.customers.projected_usage, "cust-tokyo", "sub-tokyo")
    lines = {c.billable_metric.code: c for c in projected.charges_usage}
    assert (lines["seats"].projected_units, lines["seats"].projected_amount_cents) == ("13", 3000)
    calls = Decimal(lines["api_calls"].projected_units)
    assert calls >= 120
    assert abs(lines["api_calls"].projected_amount_cents - calls * 5) <= 1, "0.05 a call"
    assert projected.projected_amount_cents == sum(
        c.projected_amount_cents for c in projected.charges_usage
    )

    terminated = await asyncio.to_thread(lago.subscriptions.destroy, "sub-tokyo")
    assert terminated.status == "terminated"
    ended = datetime.fromisoformat(terminated.terminated_at.replace("Z", "+00:00"))

    def one_invoice() -> Any:
        found = lago.invoices.find_all({"external_customer_id": "cust-tokyo"})
        return found["invoices"] if found["meta"]["total_count"] else None

    invoices = await eventually(one_invoice)
    assert len(invoices) == 1
    invoice = await asyncio.to_thread(lago.invoices.find, invoices[0].lago_id)

    # The base fee, pro rata of local days: the month's first day to the termination day,
    # both counted whole, over the month's days.
    ended_local = ended.astimezone(TOKYO)
    days_in_month = calendar.monthrange(month_start.year, month_start.month)[1]
    base = cents(Decimal(PLAN_CENTS) * ended_local.day / days_in_month)
    fees = {
        (f.item.type, f.item.code): (f.amount_cents, f.units, f.events_count)
        for f in invoice.fees.__root__
    }
    assert fees == {
        ("subscription", "team"): (base, "1", None),
        ("charge", "api_calls"): (600, "120", 120),
        ("charge", "storage"): (1950, "25", 4),
        ("charge", "seats"): (3000, "13", 3),
    }
    total = base + 600 + 1950 + 3000
    assert invoice.fees_amount_cents == total
    assert invoice.sub_total_excluding_taxes_amount_cents == total
    assert invoice.taxes_amount_cents == 0
    assert invoice.total_amount_cents == total
    assert invoice.currency == "USD"
    assert invoice.invoice_type == "subscription"
    assert invoice.status == "finalized"
    assert invoice.issuing_date == ended_local.date().isoformat()
