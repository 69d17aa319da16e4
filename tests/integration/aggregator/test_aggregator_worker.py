"""The aggregator worker against the real broker: duplicates, held events, poison messages,
period boundaries at a customer's local midnight, current usage and closed periods."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.integration.aggregator.conftest import (
    event,
    publish_catalog,
    publish_events,
    read_topic,
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
    # The consumer's fetch waits METERFLOW_AGGREGATOR_FETCH_MAX_WAIT (0.1 s), not
    # faust-streaming's fixed 1,500 ms.
    assert (await worker.get("/ready"))[1]["fetch_max_wait_ms"] == 100
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


def local_instant(text: str, tz: str) -> float:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "America/New_York"])
async def test_events_a_second_either_side_of_local_midnight_land_in_different_periods(
    settings: Settings, worker_factory: Any, unique: str, tz: str
) -> None:
    org = f"org-{unique}"
    sample = base_catalog(org, customer_tz=tz)
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2026-01-01T00:00:00Z")
    await publish_catalog(settings, sample.records)
    boundary = local_instant("2026-11-01T00:00:00", tz)
    await publish_events(
        settings,
        [event(org, "s1", "before", boundary - 1), event(org, "s1", "after", boundary + 1)],
    )
    # First run: a grace period of ten years, so nothing closes while the events arrive.
    holding = worker_factory(METERFLOW_AGGREGATOR_CLOCK_SKEW=str(10 * 365 * 86400))
    holding.start()
    await holding.wait_ready()
    await holding.wait_metric("meterflow_aggregator_events_total", 2, outcome="applied")
    holding.stop()
    # Second run, no grace: October closes (from the ledger recovered from the changelog).
    closing = worker_factory(METERFLOW_AGGREGATOR_CLOCK_SKEW="0")
    closing.start()
    await closing.wait_ready()

    def ends_at_boundary(c: dict[str, Any]) -> bool:
        return datetime.fromisoformat(c["period_end"]).timestamp() == boundary

    records = await read_topic(
        settings,
        settings.topics.periods_closed,
        1,
        until=lambda found: any(ends_at_boundary(c) for c in found),
    )
    closed = [c for c in records if ends_at_boundary(c)]
    assert len(closed) == 1
    october = closed[0]
    calls = next(c for c in october["charges"] if c["billable_metric_code"] == "calls")
    assert (calls["units"], calls["events_count"]) == ("1", 1)
    usage = await usage_until(closing, f"/current-usage/s1?organization_id={org}", lambda u: True)
    assert datetime.fromisoformat(usage["from_datetime"]).timestamp() == boundary
    assert charge_units(usage)["calls"] == ("1", 1)


async def test_events_of_an_unknown_subscription_are_held_until_it_appears(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    org = f"org-{unique}"
    sample = base_catalog(org)
    await publish_catalog(settings, sample.records)
    worker = worker_factory()
    worker.start()
    await worker.wait_ready()
    ts = datetime.now(UTC).timestamp()
    await publish_events(settings, [event(org, "s-new", f"t{i}", ts) for i in range(7)])
    await worker.wait_metric("meterflow_aggregator_events_total", 7, outcome="held")
    status, _ = await worker.get(f"/current-usage/s-new?organization_id={org}")
    assert status == 404
    subscription = sample.subscription(
        "s-new", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z"
    )
    await publish_catalog(settings, [subscription])
    usage = await usage_until(
        worker,
        f"/current-usage/s-new?organization_id={org}",
        lambda u: charge_units(u)["calls"] == ("7", 7),
    )
    assert usage["amount_cents"] == 350


async def test_poison_messages_are_dead_lettered_and_the_worker_keeps_going(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    org = f"org-{unique}"
    sample = base_catalog(org)
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z")
    await publish_catalog(settings, sample.records)
    worker = worker_factory()
    worker.start()
    await worker.wait_ready()
    ts = datetime.now(UTC).timestamp()
    poison: list[Any] = [
        (b"s1", b"{not json"),
        (b"s1", b"\xff\xfe\x00"),
        (b"s1", b"[]"),
        event(org, "s1", "no-ts", "yesterday"),  # type: ignore[arg-type]
        event(org, "s1", "bad-gb", ts, "gb", {"gb": "lots"}),
        event(org, "s1", "no-code", ts, "unknown_metric"),
    ]
    good = [event(org, "s1", f"ok{i}", ts) for i in range(5)]
    await publish_events(settings, [good[0], *poison, *good[1:]])
    letters = await read_topic(settings, settings.topics.dead_letter, len(poison))
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == sorted(["invalid_event"] * 4 + ["invalid_property", "no_charge_for_code"]), (
        reasons
    )
    by_payload = {letter["payload"]: letter for letter in letters}
    assert by_payload["{not json"]["source"]["partition"] >= 0
    assert any(letter["payload_base64"] == "//4A" for letter in letters)
    await usage_until(
        worker,
        f"/current-usage/s1?organization_id={org}",
        lambda u: charge_units(u)["calls"] == ("5", 5),
    )
    status, _ = await worker.get("/ready")
    assert status == 200
    assert (
        await worker.metric("meterflow_aggregator_dead_letters_total", reason="invalid_event") == 4
    )


async def test_late_events_are_sent_promptly_as_late_usage_not_with_the_next_close(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    org = f"org-{unique}"
    sample = base_catalog(org)
    now = datetime.now(UTC)
    this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at=last_month.isoformat())
    await publish_catalog(settings, sample.records)
    # No close grace: last month closes at once; this month cannot close before it ends.
    worker = worker_factory(
        METERFLOW_AGGREGATOR_CLOCK_SKEW="0",
        METERFLOW_AGGREGATOR_LATE_WINDOW=str(10 * 365 * 86400),
    )
    worker.start()
    await worker.wait_ready()
    closes = await read_topic(settings, settings.topics.periods_closed, 1)
    assert [c.get("type") for c in closes] == ["period_closed"]
    key = closes[0]["period_key"]
    ts = (last_month + timedelta(days=1)).timestamp()
    late = [event(org, "s1", "late-1", ts), event(org, "s1", "late-1", ts)]  # a client retry
    await publish_events(settings, [*late, event(org, "s1", "late-2", ts)])

    def late_calls(found: list[dict[str, Any]]) -> int:
        return sum(
            c["events_count"]
            for m in found
            if m.get("type") == "late_usage"
            for c in m["charges"]
            if c["billable_metric_code"] == "calls"
        )

    records = await read_topic(
        settings, settings.topics.periods_closed, 2, until=lambda found: late_calls(found) >= 2
    )
    messages = [m for m in records if m.get("type") == "late_usage"]
    assert late_calls(records) == 2
    assert all(m["period_key"] == key for m in messages)
    assert all(m["late_key"].startswith(f"{key}:late:") for m in messages)
    assert len({m["late_key"] for m in messages}) == len(messages)
    assert messages[0]["period_start"] == closes[0]["period_start"]
    assert messages[0]["period_end"] == closes[0]["period_end"]
    # Sent on their own: no further close carried them.
    assert [m for m in records if m.get("type") == "period_closed"] == closes
    await worker.wait_metric("meterflow_aggregator_events_total", 2, outcome="late")


async def test_a_failing_batch_ends_the_worker_instead_of_leaving_it_idle(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """A batch whose effects cannot be made durable must not leave a worker that looks
    ready and does nothing: the process exits, non-zero, saying why, and a restart resumes
    from the committed offsets with nothing lost."""
    org = f"org-{unique}"
    sample = base_catalog(org)
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z")
    await publish_catalog(settings, sample.records)
    failing = worker_factory(METERFLOW_AGGREGATOR_FAULT="fail_batch")
    failing.start()
    await failing.wait_ready()
    ts = datetime.now(UTC).timestamp()
    await publish_events(settings, [event(org, "s1", f"t{i}", ts) for i in range(3)])
    assert failing.proc is not None
    deadline = time.monotonic() + 60
    while failing.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert failing.proc.returncode not in (None, 0), failing.log_tail()
    assert "METERFLOW_AGGREGATOR_FAULT=fail_batch" in failing.log_tail()
    healthy = worker_factory()
    healthy.start()
    await healthy.wait_ready()
    await usage_until(
        healthy,
        f"/current-usage/s1?organization_id={org}",
        lambda u: charge_units(u)["calls"] == ("3", 3),
    )
