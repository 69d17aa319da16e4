"""The events both designs are fed, the totals they must report back, and the HTTP load
generator that posts the same batch bodies to either side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.baseline import Charge
from billing.events import event_to_wire, parse_event
from billing.periods import BillingTime, PlanInterval, period_containing
from meterflow.event_records import packs
from meterflow.settings import Settings

SUBSCRIPTION_AT = datetime(2020, 1, 1, tzinfo=UTC)
COUNT_CODE = "calls"  # count_agg
SUM_CODE = "storage"  # sum_agg over properties.gb
SUM_FIELD = "gb"
CHARGES = (Charge(COUNT_CODE, "count_agg"), Charge(SUM_CODE, "sum_agg", SUM_FIELD))


class WrongTotals(AssertionError):
    """A side reported totals that differ from what was sent: the run is worthless."""


def current_period(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) containing `now`: every benchmark subscription's period."""
    found = period_containing(
        now,
        subscription_at=SUBSCRIPTION_AT,
        interval=PlanInterval.MONTHLY,
        billing_time=BillingTime.CALENDAR,
        tz=ZoneInfo("UTC"),
    )
    return found.start, found.end


def current_period_start() -> datetime:
    """Where a subscription starts when a measure must not include closing past periods:
    one that started in 2020 has some 80 empty monthly periods that the aggregator closes
    (and emits to periods-closed) while it is measured."""
    return current_period(datetime.now(UTC))[0]


def event(subscription: str, i: int, timestamp: float, tag: str = "") -> dict[str, Any]:
    """Event i of a subscription: even ones are API calls, odd ones add i % 10 gigabytes."""
    return {
        "transaction_id": f"{tag}{subscription}-{i}",
        "external_subscription_id": subscription,
        "code": COUNT_CODE if i % 2 == 0 else SUM_CODE,
        "timestamp": round(timestamp + (i % 1000) / 1000, 3),
        "properties": {SUM_FIELD: i % 10},
    }


def count_event(transaction_id: str, subscription: str, timestamp: float) -> dict[str, Any]:
    """One event of the count metric (no properties)."""
    return {
        "transaction_id": transaction_id,
        "external_subscription_id": subscription,
        "code": COUNT_CODE,
        "timestamp": timestamp,
    }


@dataclass(frozen=True, slots=True)
class Usage:
    """What one subscription's current usage must say: events per code and the gigabytes."""

    calls: int
    storage_events: int
    gigabytes: Decimal

    @classmethod
    def expected(cls, events: int) -> Usage:
        odd = range(1, events, 2)
        return cls((events + 1) // 2, len(odd), Decimal(sum(i % 10 for i in odd)))

    def check(self, side: str, subscription: str, found: Usage) -> None:
        if found != self:
            raise WrongTotals(
                f"{side} reports {found} for {subscription}, but {self} was sent: "
                "the benchmark result is not valid"
            )


@dataclass(slots=True)
class Dataset:
    """Subscriptions with a known number of events each, all inside the current period."""

    tiers: dict[str, int]
    timestamp: float = field(default_factory=lambda: datetime.now(UTC).timestamp() - 300)

    @property
    def total(self) -> int:
        return sum(self.tiers.values())

    def events(self) -> Iterator[dict[str, Any]]:
        for subscription, count in self.tiers.items():
            for i in range(count):
                yield event(subscription, i, self.timestamp)

    def expected(self) -> dict[str, Usage]:
        return {s: Usage.expected(n) for s, n in self.tiers.items()}


def usage_from_meterflow(body: dict[str, Any]) -> Usage:
    charges = {c["billable_metric"]["code"]: c for c in body["customer_usage"]["charges_usage"]}
    return Usage(
        int(charges[COUNT_CODE]["events_count"]),
        int(charges[SUM_CODE]["events_count"]),
        Decimal(charges[SUM_CODE]["units"]),
    )


def usage_from_baseline(body: dict[str, Any]) -> Usage:
    charges = {c["code"]: c for c in body["charges_usage"]}
    return Usage(
        int(charges[COUNT_CODE]["events_count"]),
        int(charges[SUM_CODE]["events_count"]),
        Decimal(charges[SUM_CODE]["units"]),
    )


async def produce_events(
    settings: Settings,
    organization_id: str,
    events: Iterable[dict[str, Any]],
    request_size: int = 100,
) -> None:
    """Events onto the events topic as ingest writes them (not timed): the canonical wire
    form, each `request_size` events as one record per partition (packs)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    received = datetime.now(UTC)
    try:
        pending = []
        request: list[tuple[bytes, bytes]] = []

        async def send_request() -> None:
            for partition, value in packs(request, settings.partitions):
                pending.append(
                    await producer.send(settings.topics.events, value, partition=partition)
                )
            request.clear()

        for raw in events:
            wire = event_to_wire(parse_event(raw, received_at=received))
            value = orjson.dumps({"organization_id": organization_id, **wire})
            request.append((raw["external_subscription_id"].encode(), value))
            if len(request) == request_size:
                await send_request()
            if len(pending) >= 1_000:
                await asyncio.gather(*pending)
                pending.clear()
        await send_request()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def batch_bodies(tag: str, events: int, size: int, subscriptions: int = 100) -> list[bytes]:
    """`POST /api/v1/events/batch` bodies, serialised before the clock starts."""
    now = datetime.now(UTC).timestamp() - 60
    made = [event(f"ingest-{i % subscriptions}", i, now, tag=f"{tag}-") for i in range(events)]
    return [orjson.dumps({"events": made[i : i + size]}) for i in range(0, events, size)]


def stored_events(count: int) -> Iterator[dict[str, Any]]:
    """Events of another organization already stored when ingest is measured (a month of
    history in the baseline's table and indexes; for Kafka, a longer log)."""
    now = datetime.now(UTC).timestamp() - 3600
    for i in range(count):
        yield event(f"stored-{i % 1000}", i, now, tag="stored-") | {"code": "stored"}


@dataclass(slots=True)
class LoadResult:
    seconds: float
    latencies: list[float]
    accepted_batches: int
    errors: list[str]


async def post_batches(
    url: str, api_key: str, bodies: Sequence[bytes], concurrency: int
) -> LoadResult:
    """`concurrency` clients post the bodies, each taking the next unsent one, until all are
    answered; every answer must be a 200."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    accepted = 0
    queue = iter(bodies)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for body in queue:
            started = time.perf_counter()
            async with session.post(url, data=body) as response:
                answer = await response.read()
                status = response.status
            latencies.append(time.perf_counter() - started)
            if status == 200:
                accepted += 1
            else:
                errors.append(f"{status}: {answer[:200]!r}")

    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(elapsed, latencies, accepted, errors)
