"""Fixtures of the ingest tests: a real ingest server on free ports with the test's own
topics and schema, an organization with its API key, and a Lago client pointed at both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from lago_python_client.client import Client

from gateway.organizations import create_organization
from gateway.service import IngestServer
from meterflow.catalog import CatalogRecord
from meterflow.event_records import decode_record
from meterflow.settings import Settings
from web.settings import IngestSettings


@dataclass
class Tenant:
    organization_id: str
    api_key: str
    client: Client


def ingest_settings(**overrides: Any) -> IngestSettings:
    return replace(
        IngestSettings(host="127.0.0.1", port=0, metrics_port=0, outbox_interval=0.5), **overrides
    )


@pytest.fixture
def ingest_config() -> Callable[..., IngestSettings]:
    """`ingest_config(**overrides)`: IngestSettings on free loopback ports."""
    return ingest_settings


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[IngestServer]:
    async with IngestServer(settings, ingest_settings()) as running:
        yield running


@pytest.fixture
def make_tenant(settings: Settings, server: IngestServer) -> Callable[..., Any]:
    async def make(name: str = "Acme", timezone: str = "UTC") -> Tenant:
        org, key = await create_organization(settings, name, timezone)
        return Tenant(str(org.id), key, Client(api_key=key, api_url=server.url))

    return make


@pytest.fixture
async def tenant(make_tenant: Callable[..., Any]) -> Tenant:
    result: Tenant = await make_tenant()
    return result


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def call() -> Callable[..., Any]:
    """Lago's client is synchronous: `await call(fn, ...)` runs it in a thread so that the
    in-process server can answer."""
    return _call


Headers = list[tuple[str, bytes]]


async def _read_topic(
    settings: Settings, topic: str, count: int, *, timeout: float = 20.0
) -> list[tuple[bytes | None, dict[str, Any], Headers]]:
    """The first `count` records of `topic` (from the beginning, own consumer group), a pack
    of events opened into its events (key None: a pack has none), with their headers."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[tuple[bytes | None, dict[str, Any], Headers]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(
                    (m.key, item, list(m.headers))
                    for m in messages
                    for item in decode_record(m.value)
                )
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def read_topic(settings: Settings) -> Callable[..., Any]:
    """`await read_topic(topic, count)`: the first records of a topic (key, decoded JSON)."""

    async def read(
        topic: str, count: int, *, timeout: float = 20.0
    ) -> list[tuple[bytes | None, dict[str, Any]]]:
        found = await _read_topic(settings, topic, count, timeout=timeout)
        return [(key, value) for key, value, _ in found]

    return read


@pytest.fixture
def read_catalog(settings: Settings) -> Callable[..., Any]:
    """`await read_catalog(count)`: the first catalog records, decoded;
    `read_catalog(count, headers=True)`: each with its headers."""

    async def read(count: int, *, timeout: float = 20.0, headers: bool = False) -> list[Any]:
        raw = await _read_topic(settings, settings.topics.catalog, count, timeout=timeout)
        found = [(CatalogRecord.decode(orjson.dumps(value)), named) for _, value, named in raw]
        return found if headers else [record for record, _ in found]

    return read
