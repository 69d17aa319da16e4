"""Session fixtures that start (or reuse) the real Kafka and Postgres, and factories that
give each test its own topics, consumer groups and database schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from meterflow.db import connect, migrate
from meterflow.errors import MeterflowError
from meterflow.settings import Settings, Topics
from meterflow.stack.local import LocalStack
from meterflow.topics import delete_topics, ensure_topics


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The embedded Kafka and Postgres (or the external ones the environment names).

    Components already running (say, under `meterflow up`) are reused and left running;
    those this session starts it also stops. If one cannot start, every test using it
    fails with the reason: nothing is skipped.
    """
    local = LocalStack.from_settings(Settings.from_env())
    before = local.running()
    try:
        local.start()
    except MeterflowError as exc:
        pytest.fail(f"the test stack could not start: {exc}", pytrace=False)
    yield local
    if local.kafka is not None and before.get("kafka") is None:
        local.kafka.stop()
    if local.postgres is not None and before.get("postgres") is None:
        local.postgres.stop()


@pytest.fixture
def unique() -> str:
    """A short random name part, so that tests never share topics, groups or schemas."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def settings(stack: LocalStack, unique: str) -> AsyncIterator[Settings]:
    """Settings of the running stack with this test's own topics and database schema,
    both created (and migrated) before the test, the schema dropped after it."""
    test_settings = replace(
        stack.settings, topics=Topics(prefix=f"test-{unique}."), db_schema=f"test_{unique}"
    )
    await migrate(test_settings.dsn, schema=test_settings.db_schema)
    await ensure_topics(
        test_settings.bootstrap_servers, test_settings.topics, test_settings.partitions
    )
    yield test_settings
    await delete_topics(test_settings.bootstrap_servers, test_settings.topics)
    conn = await connect(test_settings.dsn)
    try:
        await conn.execute(f'DROP SCHEMA "{test_settings.db_schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search_path is this test's schema."""
    conn = await connect(settings.dsn, schema=settings.db_schema)
    yield conn
    await conn.close()
