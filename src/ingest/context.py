"""What every handler of one ingest app shares: settings, the pool, the broker, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import asyncpg
from aiohttp import web

from ingest.broker import Broker
from ingest.catalog_publisher import CatalogPublisher
from ingest.key_cache import KeyCache
from ingest.metrics import IngestMetrics
from ingest.repository import Organization
from ingest.settings import IngestSettings
from meterflow.settings import Settings


@dataclass
class IngestContext:
    settings: Settings
    ingest: IngestSettings
    metrics: IngestMetrics
    broker: Broker
    pool: asyncpg.Pool | None = None
    publisher: CatalogPublisher | None = None
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
    def catalog(self) -> CatalogPublisher:
        assert self.publisher is not None, "the publisher starts with the app"
        return self.publisher


CONTEXT = web.AppKey("context", IngestContext)
ORGANIZATION = web.RequestKey("organization", Organization)


def context(request: web.Request) -> IngestContext:
    return request.app[CONTEXT]


def organization(request: web.Request) -> Organization:
    return request[ORGANIZATION]
