"""The aggregator worker against the real broker: duplicates, held events, poison messages,
period boundaries at a customer's local midnight, current usage and closed periods."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.integration.aggregator.conftest import (
    event,
    publish_catalog,
    publish_events,
)

from aggregator.sample_catalog import SampleCatalog
from meterflow.settings import Settings


def base_catalog(org: str, *, customer_tz: str | None = None) -> SampleCatalog:
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1", timezone=customer_tz)
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls", "gb"], unit_amount="0.5")
    return sample


async def usage_until(worker: Any, path: str, predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        status, body = await worker.get(path)
        if status == 200 and predicate(body["customer_usage"]):
            return body["customer_usage"]
        await asyncio.sleep(0.3)
    pytest.fail(f"current usage never matched; last answer: {body}")


def charge_units(usage: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {
        c["billable_metric"]["code"]: (c["units"], c["events_count"])
        for c in usage["charges_usage"]
    }


async def test_duplicates_are_dropped_and_current_usage_is_priced(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    org = f"org-{unique}"
    sample = base_catalog(org)
    now = datetime.now(UTC)
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z")
    await publish_catalog(settings, sample.records)
    worker = worker_factory()
    worker.start()
    await worker.wait_ready()
    ts = now.timestamp()
    events = [event(org, "s1", f"t{i}", ts) for i in range(10)]
    events += [event(org, "s1", f"t{i}", ts) for i in range(5)]  # client retries
    events += [event(org, "s1", "g1", ts, "gb", {"gb": "2.25"})]
    await publish_events(settings, events)
    usage = await usage_until(
        worker,
        f"/current-usage/s1?organization_id={org}",
        lambda u: charge_units(u) == {"calls": ("10", 10), "gb": ("2.25", 1)},
    )
    # standard model at 0.5 per unit: 10 calls -> 5.00, 2.25 GB -> 1.125 -> 1.13
    assert usage["amount_cents"] == 500 + 113
    assert usage["total_amount_cents"] == usage["amount_cents"]
    assert usage["currency"] == "USD"
    status, body = await worker.get(f"/current-usage/nope?organization_id={org}")
    assert status == 404 and body["code"] == "subscription_not_found"
