"""Exactly-once effect under SIGKILL: 100k events (a tenth of them client retries), written
as ingest writes them (lone events and packs), while the worker process is killed several
times mid-stream and restarted; the totals end equal to a plain recomputation from the
events, exactly."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from tests.integration.aggregator.conftest import event, publish_catalog

from aggregator.sample_catalog import SampleCatalog
from meterflow.event_records import packs
from meterflow.settings import Settings

SUBSCRIPTIONS = 40
UNIQUE_EVENTS = 90_000
RETRIES = 10_000
KILLS = 4


async def produce_all(settings: Settings, events: list[dict[str, Any]], rng: random.Random) -> None:
    """Write the events as ingest does: requests of 1 to 60 events, each written as one
    record per partition (a lone event or a pack)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        pending = []
        start = 0
        while start < len(events):
            request = events[start : start + rng.randint(1, 60)]
            start += len(request)
            encoded = [(e["external_subscription_id"].encode(), orjson.dumps(e)) for e in request]
            for partition, value in packs(encoded, settings.partitions):
                pending.append(
                    await producer.send(settings.topics.events, value, partition=partition)
                )
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def totals(worker: Any, org: str) -> dict[str, tuple[int, Decimal]] | None:
    found = {}
    for i in range(SUBSCRIPTIONS):
        status, body = await worker.get(f"/current-usage/s{i}?organization_id={org}")
        if status != 200:
            return None
        charges = {c["billable_metric"]["code"]: c for c in body["customer_usage"]["charges_usage"]}
        found[f"s{i}"] = (charges["calls"]["events_count"], Decimal(charges["gb"]["units"]))
    return found


async def test_sigkill_during_100k_events_never_double_counts_nor_loses(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    rng = random.Random(unique)
    org = f"org-{unique}"
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls", "gb"])
    for i in range(SUBSCRIPTIONS):
        sample.subscription(
            f"s{i}", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z"
        )
    await publish_catalog(settings, sample.records)

    ts = datetime.now(UTC).timestamp()
    unique_events = []
    for n in range(UNIQUE_EVENTS):
        sub = f"s{rng.randrange(SUBSCRIPTIONS)}"
        code = "calls" if n % 2 else "gb"
        props = {"gb": f"{rng.randint(1, 1000) / 1000:.3f}"} if code == "gb" else {}
        unique_events.append(event(org, sub, f"t{n}", ts, code, props))
    stream = list(unique_events)
    for _ in range(RETRIES):  # a retry lands anywhere after its original
        original = rng.randrange(UNIQUE_EVENTS)
        at = rng.randrange(original + 1, len(stream) + 1)
        stream.insert(at, unique_events[original])
    expected: dict[str, tuple[int, Decimal]] = {}
    calls: Counter[str] = Counter()
    gb: dict[str, Decimal] = {f"s{i}": Decimal(0) for i in range(SUBSCRIPTIONS)}
    for item in unique_events:
        sub = item["external_subscription_id"]
        if item["code"] == "calls":
            calls[sub] += 1
        else:
            gb[sub] += Decimal(item["properties"]["gb"])
    expected = {f"s{i}": (calls[f"s{i}"], gb[f"s{i}"]) for i in range(SUBSCRIPTIONS)}

    started = time.monotonic()
    worker = worker_factory(METERFLOW_AGGREGATOR_COMMIT_INTERVAL="1.0")
    worker.start()
    producing = asyncio.create_task(produce_all(settings, stream, rng))
    await worker.wait_ready()
    for _ in range(KILLS):
        # Kill while the worker is busy: after it applied some events in this run.
        await worker.wait_metric("meterflow_aggregator_events_total", 1, outcome="applied")
        await asyncio.sleep(rng.uniform(0.3, 2.0))
        worker.kill()
        worker.start()
        await worker.wait_ready()
    await producing

    deadline = time.monotonic() + 150
    found = None
    while time.monotonic() < deadline:
        found = await totals(worker, org)
        if found == expected:
            break
        await asyncio.sleep(1.0)
    assert found == expected, f"after {KILLS} kills: got {found}, want {expected}"
    # Nothing arrives later either (no redelivery applied twice after the match).
    await asyncio.sleep(3)
    assert await totals(worker, org) == expected
    print(f"crash test: {len(stream)} events, {KILLS} kills, {time.monotonic() - started:.1f}s")
    assert worker.starts == KILLS + 1


pytestmark = pytest.mark.timeout(280)
