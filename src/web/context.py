"""What every handler of one HTTP app shares: settings, the pool, the producer, the catalog
outbox, metrics, and the organization the request's API key names."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import asyncpg
from aiohttp import web

from meterflow.aggregator_usage import UsageClient
from meterflow.event_records import WireEvent
from meterflow.settings import Settings
from web.key_cache import KeyCache
from web.metrics import IngestMetrics
from web.settings import IngestSettings


@dataclass(frozen=True, slots=True)
class Organization:
    """The organization a request's API key names: every read and write is scoped to it."""

    id: uuid.UUID
    name: str
    timezone: str


class Producer(Protocol):
    """Sends records to Kafka and waits for their acknowledgement (`ingest.broker.Broker`)."""

    @property
    def healthy(self) -> bool: ...

    async def send_records(
        self, topic: str, records: Sequence[tuple[bytes, bytes, list[tuple[str, bytes]]]]
    ) -> None: ...

    async def send_packed(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None: ...

    async def send_events(self, topic: str, events: Sequence[WireEvent]) -> None: ...


class CatalogOutbox(Protocol):
    """Sends the catalog changes a request committed (`store.catalog_publisher`)."""

    async def drain_quietly(self) -> None: ...


@dataclass
class IngestContext:
    settings: Settings
    ingest: IngestSettings
    metrics: IngestMetrics
    broker: Producer
    usage: UsageClient
    pool: asyncpg.Pool | None = None
    publisher: CatalogOutbox | None = None
    client: aiohttp.ClientSession | None = None
    keys: KeyCache = field(default_factory=lambda: KeyCache(0))

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the pool opens in the app's startup"
        return self.pool

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.client is not None, "the HTTP client opens in the app's startup"
        return self.client

    @property
    def catalog(self) -> CatalogOutbox:
        assert self.publisher is not None, "the publisher starts with the app"
        return self.publisher


CONTEXT = web.AppKey("context", IngestContext)
ORGANIZATION = web.RequestKey("organization", Organization)


def context(request: web.Request) -> IngestContext:
    return request.app[CONTEXT]


def organization(request: web.Request) -> Organization:
    return request[ORGANIZATION]
