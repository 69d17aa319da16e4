"""Fixtures of the invoicer tests: catalog rows as ingest's tables hold them, closed
periods published to the test's own topic, and an invoicer running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from invoicer.consumer import Invoicer
from invoicer.settings import InvoicerSettings
from meterflow.settings import Settings

GRADUATED_RANGES = [
    {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "1"},
    {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"},
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class Catalog:
    """One organization with a customer, two metrics, a plan with a standard and a
    graduated charge, and a subscription, inserted in the test's schema."""

    organization_id: str
    customer_id: str
    subscription_id: str
    plan_id: str
    standard_charge: str
    graduated_charge: str
    metric_id: str
    external_subscription_id: str
    external_customer_id: str
    subscription_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def usage(self, charge_id: str, model: str, units: int) -> dict[str, Any]:
        return {
            "charge_id": charge_id,
            "charge_model": model,
            "billable_metric_id": self.metric_id,
            "billable_metric_code": "api_calls",
            "aggregation_type": "count_agg",
            "units": str(units),
            "events_count": units,
            "aggregation": {"type": "count_agg", "events_count": units},
        }

    def closed(
        self,
        start: datetime,
        end: datetime,
        charges: list[dict[str, Any]],
        *,
        adjustments: list[dict[str, Any]] | None = None,
        terminated: bool = False,
    ) -> dict[str, Any]:
        """A periods-closed message, shaped as the aggregator's `_emit_close` writes it."""
        return {
            "period_key": f"{self.subscription_id}:{start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "organization_id": self.organization_id,
            "subscription_id": self.subscription_id,
            "external_subscription_id": self.external_subscription_id,
            "external_customer_id": self.external_customer_id,
            "plan_code": "startup",
            "currency": "EUR",
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "terminated": terminated,
            "charges": charges,
            "adjustments": adjustments or [],
            "closed_at": end.isoformat(),
        }


async def insert_catalog(
    db: asyncpg.Connection,
    *,
    org_name: str = "Acme",
    timezone: str | None = None,
    pay_in_advance: bool = False,
    billing_time: str = "calendar",
    subscription_at: datetime | None = None,
    amount_cents: int = 1000,
    grace_days: int | None = None,
    organization_id: uuid.UUID | None = None,
) -> Catalog:
    org = organization_id or uuid.uuid4()
    if organization_id is None:
        await db.execute(
            "INSERT INTO organizations (id, name, timezone) VALUES ($1, $2, 'UTC')", org, org_name
        )
    customer, metric, plan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    standard, graduated, subscription = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    external_customer = f"cust-{customer.hex[:8]}"
    attributes: dict[str, Any] = {"name": "Jane"}
    if grace_days is not None:
        attributes["billing_configuration"] = {"invoice_grace_period": grace_days}
    await db.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, name, currency, "
        "timezone, attributes) VALUES ($1, $2, $3, (SELECT coalesce(max(sequential_id), 0) + 1 "
        "FROM customers WHERE organization_id = $2), 'Jane', 'EUR', $4, $5::jsonb)",
        customer,
        org,
        external_customer,
        timezone,
        _json(attributes),
    )
    await db.execute(
        "INSERT INTO billable_metrics (id, organization_id, code, name, aggregation_type) "
        "VALUES ($1, $2, $3, 'API calls', 'count_agg')",
        metric,
        org,
        f"api_calls_{metric.hex[:6]}",
    )
    await db.execute(
        "INSERT INTO plans (id, organization_id, code, name, interval, amount_cents, "
        "amount_currency, pay_in_advance) VALUES ($1, $2, $3, 'Startup', 'monthly', $4, 'EUR', $5)",
        plan,
        org,
        f"startup_{plan.hex[:6]}",
        amount_cents,
        pay_in_advance,
    )
    for position, (charge, model, properties) in enumerate(
        [
            (standard, "standard", {"amount": "0.05"}),
            (graduated, "graduated", {"graduated_ranges": GRADUATED_RANGES}),
        ]
    ):
        await db.execute(
            "INSERT INTO charges (id, plan_id, billable_metric_id, position, charge_model, "
            "properties) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            charge,
            plan,
            metric,
            position,
            model,
            _json(properties),
        )
    started = subscription_at or utc(2026, 1, 15, 10)
    external_subscription = f"sub-{subscription.hex[:8]}"
    await db.execute(
        "INSERT INTO subscriptions (id, organization_id, external_id, customer_id, plan_id, "
        "billing_time, subscription_at, started_at, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'active')",
        subscription,
        org,
        external_subscription,
        customer,
        plan,
        billing_time,
        started,
    )
    return Catalog(
        organization_id=str(org),
        customer_id=str(customer),
        subscription_id=str(subscription),
        plan_id=str(plan),
        standard_charge=str(standard),
        graduated_charge=str(graduated),
        metric_id=str(metric),
        external_subscription_id=external_subscription,
        external_customer_id=external_customer,
        subscription_at=started,
    )


async def publish(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(settings.topics.periods_closed, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def encode(message: dict[str, Any]) -> tuple[bytes, bytes]:
    return message["external_subscription_id"].encode(), orjson.dumps(message)


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def count_invoices(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM invoices"))


def invoicer_config(unique: str, **overrides: Any) -> InvoicerSettings:
    return replace(
        InvoicerSettings(
            group_id=f"invoicer-{unique}-{uuid.uuid4().hex[:6]}",
            metrics_port=0,
            retry_initial=0.05,
            retry_max=0.5,
            finalize_interval=0.5,
        ),
        **overrides,
    )


@contextlib.asynccontextmanager
async def running_invoicer(settings: Settings, config: InvoicerSettings) -> AsyncIterator[Invoicer]:
    invoicer = Invoicer(settings, config)
    await invoicer.start()
    task = asyncio.create_task(invoicer.run())
    try:
        yield invoicer
    finally:
        invoicer.stop.set()
        await task
        await invoicer.close()


@pytest.fixture
def start_invoicer(settings: Settings, unique: str) -> Callable[..., Any]:
    """`async with start_invoicer(settings=None, **overrides) as invoicer:` an in-process
    invoicer with a fresh consumer group (so each start reads the topic from the beginning);
    `settings` replaces the test's (say, to reach Postgres through a proxy)."""

    def start(
        other: Settings | None = None, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[Invoicer]:
        return running_invoicer(other or settings, invoicer_config(unique, **overrides))

    return start


async def read_dead_letters(settings: Settings, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topics.dead_letter,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                out.extend(orjson.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return out


@dataclass
class InvoicingKit:
    """The helpers above, bound to this test's settings and database connection."""

    settings: Settings
    db: asyncpg.Connection

    async def catalog(self, **options: Any) -> Catalog:
        return await insert_catalog(self.db, **options)

    async def publish(self, *messages: dict[str, Any] | tuple[bytes | None, bytes]) -> None:
        await publish(self.settings, [m if isinstance(m, tuple) else encode(m) for m in messages])

    async def invoices(self) -> int:
        return await count_invoices(self.db)

    async def wait_for_invoices(self, count: int, *, timeout: float = 60.0) -> None:
        async def enough() -> bool:
            return await count_invoices(self.db) >= count

        await wait_for(enough, timeout=timeout, what=f"{count} invoice(s)")

    async def dead_letters(self, count: int) -> list[dict[str, Any]]:
        return await read_dead_letters(self.settings, count)

    async def committed(self, group_id: str) -> int:
        return await committed_total(self.settings, group_id)


@pytest.fixture
def kit(settings: Settings, db: asyncpg.Connection) -> InvoicingKit:
    return InvoicingKit(settings, db)


async def committed_total(settings: Settings, group_id: str) -> int:
    """The sum over periods-closed partitions of the group's committed offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        total = 0
        for partition in range(settings.partitions):
            offset = await consumer.committed(
                TopicPartition(settings.topics.periods_closed, partition)
            )
            total += offset or 0
        return total
    finally:
        await consumer.stop()


class TcpProxy:
    """A loopback TCP proxy to Postgres whose link the test can cut and restore: a real
    server outage, as the invoicer sees it, without stopping the shared server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.close()
            self._writers.discard(sink)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()


@pytest.fixture
async def postgres_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    target = urlsplit(settings.dsn)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def lago_api(settings: Settings) -> AsyncIterator[Any]:
    """A real ingest server (the Lago API) on free ports, over this test's schema."""
    from gateway.service import IngestServer
    from web.settings import IngestSettings

    server = IngestServer(
        settings, IngestSettings(host="127.0.0.1", port=0, metrics_port=0, outbox_interval=0.5)
    )
    async with server:
        yield server


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Lago's client is synchronous: run it in a thread so the in-process server answers."""
    return await asyncio.to_thread(fn, *args)


async def drained(invoicer: Invoicer, messages: int, *, timeout: float = 60.0) -> None:
    """Wait until the invoicer has finished `messages` messages (written or skipped)."""
    deadline = time.monotonic() + timeout
    while (invoicer.metrics.registry.get_sample_value("invoicer_messages_done_total") or 0) < (
        messages
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"the invoicer did not finish {messages} messages")
        await asyncio.sleep(0.1)
