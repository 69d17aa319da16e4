"""The suite's aggregation and current-usage measures (`bench.run`): one side folds a
pre-filled events topic with a fresh aggregator worker, the other runs the baseline's one
grouped SQL pass; then each side answers current usage for every tier's subscription, its
latencies timed and its totals checked against what was sent."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench import baseline, memory
from bench.aggregator_throughput import done_events
from bench.processes import ServiceProcess, delete_app_topics, free_port, service_env
from bench.workload import (
    CHARGES,
    COUNT_CODE,
    SUBSCRIPTION_AT,
    SUM_CODE,
    SUM_FIELD,
    Dataset,
    Usage,
    WrongTotals,
    current_period,
    produce_events,
    usage_from_baseline,
    usage_from_meterflow,
)
from meterflow.db import connect
from meterflow.settings import Settings


@dataclass(slots=True)
class UsageRun:
    """One run of one side: aggregation throughput, and current-usage latencies per tier."""

    events_per_second: float
    latencies: dict[str, list[float]]


async def timed_gets(
    session: aiohttp.ClientSession, url: str, requests: int
) -> tuple[list[float], dict[str, Any]]:
    """`requests` sequential GETs (one warm-up first); their latencies and the last answer."""
    latencies: list[float] = []
    body: dict[str, Any] = {}
    for i in range(requests + 1):
        started = time.perf_counter()
        async with session.get(url) as response:
            raw = await response.read()
            if response.status != 200:
                raise WrongTotals(f"GET {url} answered {response.status}: {raw[:300]!r}")
        if i:
            latencies.append(time.perf_counter() - started)
        body = orjson.loads(raw)
    return latencies, body


async def prefill(settings: Settings, organization_id: str, dataset: Dataset) -> None:
    """The catalog and the dataset's events on the events topic (not timed)."""
    sample = memory.bench_plan(organization_id)
    for subscription in dataset.tiers:
        sample.subscription(
            subscription,
            customer="bench-customer",
            plan_code="bench-plan",
            subscription_at=SUBSCRIPTION_AT.isoformat(),
        )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for record in sample.records:
            await producer.send(
                settings.topics.catalog,
                key=record.key,
                value=record.encode(),
                headers=record.headers,
            )
        await producer.flush()
    finally:
        await producer.stop()
    await produce_events(settings, organization_id, dataset.events())


async def aggregate_meterflow(
    settings: Settings, organization_id: str, dataset: Dataset, run: int, latency_requests: int
) -> UsageRun:
    """A fresh worker reads the pre-filled topic; the clock runs from the worker being ready
    until every event is accounted for (as in bench/aggregator_throughput.py)."""
    app_id = f"{settings.topics.prefix}aggregator-{run}"
    port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = service_env(
            settings,
            METERFLOW_AGGREGATOR_APP_ID=app_id,
            METERFLOW_AGGREGATOR_PORT=str(port),
            METERFLOW_AGGREGATOR_METRICS_PORT=str(metrics_port),
            METERFLOW_AGGREGATOR_DATA_DIR=data_dir,
        )
        worker = ServiceProcess("aggregator", env, Path(data_dir) / "worker.log")
        try:
            await worker.wait_http(port, "/ready")
            started = time.perf_counter()
            while await asyncio.to_thread(done_events, [metrics_port]) < dataset.total:
                if worker.proc.poll() is not None:
                    raise worker.failed("exited while aggregating")
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            latencies = {}
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                for subscription, expected in dataset.expected().items():
                    url = (
                        f"http://127.0.0.1:{port}/current-usage/{subscription}"
                        f"?organization_id={organization_id}"
                    )
                    found, body = await timed_gets(session, url, latency_requests)
                    expected.check("meterflow", subscription, usage_from_meterflow(body))
                    latencies[subscription] = found
        finally:
            worker.stop()
            await delete_app_topics(settings, app_id)
    return UsageRun(dataset.total / elapsed, latencies)


async def load_baseline(
    base: Settings, schema: str, organization_id: str, dataset: Dataset
) -> None:
    """The same events as rows (COPY, not timed), then ANALYZE as a database would have."""
    await baseline.create_schema(base.dsn, schema)
    conn = await connect(base.dsn, schema=schema)
    try:
        await copy_rows(conn, organization_id, dataset.events())
    finally:
        await conn.close()


async def copy_rows(
    conn: asyncpg.Connection, organization_id: str, events: Iterable[dict[str, Any]]
) -> None:
    """Events into the baseline's table with COPY, then ANALYZE (not timed)."""
    chunk: list[dict[str, Any]] = []
    for wire in events:
        chunk.append(wire)
        if len(chunk) >= 50_000:
            await baseline.copy_events(conn, organization_id, chunk)
            chunk = []
    if chunk:
        await baseline.copy_events(conn, organization_id, chunk)
    await conn.execute("ANALYZE events")


async def aggregate_baseline(
    base: Settings,
    schema: str,
    organization_id: str,
    key: str,
    dataset: Dataset,
    latency_requests: int,
) -> UsageRun:
    """Read-time SQL: every subscription's usage of the period in one grouped query (what a
    billing run reads), then per-subscription current usage through the HTTP endpoint."""
    period = current_period(datetime.now(UTC))
    conn = await connect(base.dsn, schema=schema)
    try:
        started = time.perf_counter()
        totals = await baseline.usage_of_all(conn, organization_id, *period, SUM_FIELD)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    for subscription, expected in dataset.expected().items():
        calls = totals.get((subscription, COUNT_CODE), (0, Decimal(0)))
        storage = totals.get((subscription, SUM_CODE), (0, Decimal(0)))
        expected.check(
            "baseline (all subscriptions)",
            subscription,
            Usage(calls[0], storage[0], storage[1]),
        )
    latencies = {}
    async with baseline.BaselineServer(base.dsn, schema, CHARGES, period) as server:
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for subscription, expected in dataset.expected().items():
                url = f"{server.url}/current-usage/{subscription}"
                found, body = await timed_gets(session, url, latency_requests)
                expected.check("baseline", subscription, usage_from_baseline(body))
                latencies[subscription] = found
    return UsageRun(dataset.total / elapsed, latencies)
