"""The period closer's sends when the worker dies at each step of a slice (issue 15: what
the broker acknowledged is recorded once per slice, `aggregator.outbox_acks`, instead of
each closed ledger rewritten): every period is emitted, with its events, none lost; once a
slice's record is durable its periods are not sent again, neither by the restarted worker
nor when later events touch those subscriptions."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.integration.aggregator.conftest import (
    AggregatorProcess,
    event,
    publish_catalog,
    publish_requests,
    read_topic,
)

from aggregator.sample_catalog import SampleCatalog
from meterflow.settings import Settings

SUBSCRIPTIONS = 1_500  # a few slices on each partition


async def close_through_a_fault(
    settings: Settings, worker_factory: Any, org: str, fault: str
) -> tuple[AggregatorProcess, dict[str, list[dict[str, Any]]]]:
    """Last month's period of each subscription (one event each) is due when the worker
    starts; it ends itself at `fault` of its second sending slice and is started again
    without it. Returns the worker and every periods-closed message by `period_key`."""
    this_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.plan("p1", ["calls"])
    for i in range(SUBSCRIPTIONS):
        sample.subscription(
            f"s{i}", customer="c1", plan_code="p1", subscription_at=last_month.isoformat()
        )
    await publish_catalog(settings, sample.records)
    ts = (last_month + timedelta(days=3)).timestamp()
    events = [event(org, f"s{i}", f"t{i}", ts) for i in range(SUBSCRIPTIONS)]
    await publish_requests(settings, events, random.Random(5))
    worker = worker_factory(METERFLOW_AGGREGATOR_FAULT=fault, METERFLOW_AGGREGATOR_CLOCK_SKEW="0")
    worker.start()
    deadline = time.monotonic() + 180
    assert worker.proc is not None
    while worker.proc.poll() is None:
        assert time.monotonic() < deadline, f"no fault:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)
    assert worker.proc.returncode == 70, worker.log_tail()
    assert f"aggregator.fault {fault}" in worker.log_tail()
    del worker.env["METERFLOW_AGGREGATOR_FAULT"]
    worker.start()
    await worker.wait_ready()
    return worker, await closed_periods(settings)


async def closed_periods(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every periods-closed message by `period_key`, once all subscriptions' are there; the
    copies of one are equal, and each bills its one event."""
    records = await read_topic(
        settings,
        settings.topics.periods_closed,
        SUBSCRIPTIONS,
        timeout=180,
        until=lambda found: len({m["period_key"] for m in found}) >= SUBSCRIPTIONS,
    )
    by_key: dict[str, list[dict[str, Any]]] = {}
    for message in records:
        by_key.setdefault(message["period_key"], []).append(message)
    assert len(by_key) == SUBSCRIPTIONS
    for copies in by_key.values():
        assert all(copy == copies[0] for copy in copies)
        assert [c["events_count"] for c in copies[0]["charges"]] == [1]
    return by_key


def sent(by_key: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len(copies) for copies in by_key.values())


async def test_a_slice_whose_messages_were_never_sent_is_sent_by_the_next_start(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """Killed once the slice's closes are durable, before a message left: the restarted
    worker's seed finds them in the outboxes and sends them."""
    worker, by_key = await close_through_a_fault(
        settings, worker_factory, f"org-{unique}", "exit_before_close_sent"
    )
    assert "aggregator.outboxes_resent" in worker.log_tail(200)
    assert sent(by_key) >= SUBSCRIPTIONS


async def test_a_slice_acknowledged_but_not_recorded_is_sent_again(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """Killed after the broker acknowledged the slice's messages, before the record that
    says so: they are sent again (the same messages: `period_key` makes it harmless)."""
    worker, by_key = await close_through_a_fault(
        settings, worker_factory, f"org-{unique}", "exit_after_close_sent"
    )
    assert "aggregator.outboxes_resent" in worker.log_tail(200)
    assert sent(by_key) > SUBSCRIPTIONS


async def test_a_recorded_slice_is_never_sent_again(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """Killed once the slice's record is durable: nothing is sent twice, after the restart
    nor when this month's events reach ledgers whose outboxes still hold those messages."""
    org = f"org-{unique}"
    worker, by_key = await close_through_a_fault(
        settings, worker_factory, org, "exit_after_sent_record"
    )
    assert sent(by_key) == SUBSCRIPTIONS
    ts = time.time()
    events = [event(org, f"s{i}", f"later{i}", ts) for i in range(SUBSCRIPTIONS)]
    await publish_requests(settings, events, random.Random(6))
    await worker.wait_metric(
        "meterflow_aggregator_events_total", SUBSCRIPTIONS, timeout=120, outcome="applied"
    )
    await asyncio.sleep(3)  # several of the closer's ticks (every 0.5 s here)
    assert sent(await closed_periods(settings)) == SUBSCRIPTIONS


pytestmark = pytest.mark.timeout(600)
