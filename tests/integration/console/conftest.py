"""Fixtures of the console tests: a real ingest server (which serves the console) on free
ports with the test's own schema, organizations with a console user each, and an HTTP client
that keeps cookies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.service import IngestServer
from meterflow.settings import Settings
from support.console import Operator, make_operator
from web.settings import IngestSettings


@pytest.fixture
async def console_server(settings: Settings) -> AsyncIterator[IngestServer]:
    ingest = IngestSettings(host="127.0.0.1", port=0, metrics_port=0, outbox_interval=0.5)
    async with IngestServer(settings, ingest) as running:
        yield running


@pytest.fixture
def operator_factory(settings: Settings) -> Callable[..., Any]:
    """`await operator_factory(name, timezone)`: an organization with a console user."""

    async def make(name: str = "Acme", timezone: str = "Europe/Paris") -> Operator:
        return await make_operator(settings, name, timezone)

    return make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe: accept the cookies of a server known by IP address (127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
