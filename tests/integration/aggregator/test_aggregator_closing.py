"""Period closing driven by the stream (issue 11), against the real broker: a termination
closes its last period within seconds, with every event accepted before it; a period that
ended closes only once the worker has read its partition past the end."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.aggregator.conftest import (
    event,
    publish_catalog,
    publish_requests,
    read_topic,
)

from aggregator.sample_catalog import SampleCatalog
from meterflow.settings import Settings


def catalog(org: str, subscription_at: datetime) -> SampleCatalog:
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.plan("p1", ["calls"])
    sample.subscription(
        "s1", customer="c1", plan_code="p1", subscription_at=subscription_at.isoformat()
    )
    return sample


def calls(message: dict[str, Any]) -> int:
    return sum(int(c["events_count"]) for c in message["charges"])


async def test_a_termination_closes_at_once_with_every_event_accepted_before_it(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """Default closing settings (interval, clock skew): the events are produced, then the
    subscription is terminated at once, without waiting for the worker to apply them."""
    org = f"org-{unique}"
    now = datetime.now(UTC)
    sample = catalog(org, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    await publish_catalog(settings, sample.records)
    worker = worker_factory(
        METERFLOW_AGGREGATOR_CLOSE_INTERVAL="1", METERFLOW_AGGREGATOR_CLOCK_SKEW="5"
    )
    worker.start()
    await worker.wait_ready()
    ts = time.time()
    events = [event(org, "s1", f"t{i}", ts) for i in range(20_000)]
    await publish_requests(settings, events, random.Random(7))
    # As ingest states it: to the second (the events may fall within that second).
    terminated = datetime.now(UTC).replace(microsecond=0)
    termination = sample.subscription(
        "s1",
        customer="c1",
        plan_code="p1",
        subscription_at=sample.records[-1].body["subscription_at"],  # type: ignore[index]
        terminated_at=terminated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    started = time.monotonic()
    await publish_catalog(settings, [termination])
    records = await read_topic(
        settings,
        settings.topics.periods_closed,
        1,
        timeout=30,
        until=lambda found: any(m.get("terminated") for m in found),
    )
    elapsed = time.monotonic() - started
    final = [m for m in records if m.get("terminated")]
    assert len(final) == 1
    assert calls(final[0]) == 20_000
    assert datetime.fromisoformat(final[0]["period_end"]) == terminated
    assert elapsed < 5.0, f"the termination closed {elapsed:.2f} s after it was published"


async def test_a_period_closes_only_once_the_stream_is_read_past_its_end(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    """Last month's events wait in the topic when the worker starts with no clock skew at
    all: the month closes after the worker applied them, never before (so none is late)."""
    org = f"org-{unique}"
    now = datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    sample = catalog(org, last_month)
    await publish_catalog(settings, sample.records)
    ts = (last_month + timedelta(days=3)).timestamp()
    await publish_requests(
        settings, [event(org, "s1", f"t{i}", ts) for i in range(30_000)], random.Random(3)
    )
    worker = worker_factory(METERFLOW_AGGREGATOR_CLOCK_SKEW="0")
    worker.start()
    await worker.wait_ready()
    records = await read_topic(settings, settings.topics.periods_closed, 1, timeout=60)
    assert [m.get("type") for m in records] == ["period_closed"]
    assert datetime.fromisoformat(records[0]["period_end"]) == this_month
    assert calls(records[0]) == 30_000
    await worker.wait_metric("meterflow_aggregator_events_total", 30_000, outcome="applied")
    assert await worker.metric("meterflow_aggregator_events_total", outcome="late") == 0
