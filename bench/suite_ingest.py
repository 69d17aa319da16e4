"""The suite's ingest measure (`bench.run`): the same batch bodies, warm-up first, to
meterflow's ingest app (to Kafka, acks=all) and to the baseline's endpoint (one INSERT per
batch, answered after commit); each side's stored events are then counted and checked
against what was sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka import TopicPartition

from bench import baseline, report
from bench.processes import isolated
from bench.suite_usage import copy_rows
from bench.workload import (
    CHARGES,
    COUNT_CODE,
    SUM_CODE,
    SUM_FIELD,
    LoadResult,
    Usage,
    WrongTotals,
    current_period,
    post_batches,
    produce_events,
    stored_events,
)
from gateway.organizations import create_organization
from gateway.service import IngestServer
from meterflow.db import connect, migrate
from meterflow.event_records import decode_record
from meterflow.settings import Settings
from meterflow.topics import delete_topics, ensure_topics, reader
from web.settings import IngestSettings


async def drop_schema(settings: Settings, schema: str) -> None:
    conn = await connect(settings.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def topic_usage(settings: Settings, topic: str) -> tuple[Usage, int]:
    """Every record of a topic read back from its beginning, counted by code, with the
    summed gigabytes (what meterflow holds after ingest, before any aggregation); and how
    many records held them."""
    calls = storage = records = 0
    gigabytes = Decimal(0)
    async with reader(settings.bootstrap_servers) as consumer:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                records += len(messages)
                for message in messages:
                    for wire in decode_record(message.value):  # one event, or a pack of them
                        if wire["code"] == SUM_CODE:
                            storage += 1
                            gigabytes += Decimal(str(wire["properties"][SUM_FIELD]))
                        elif wire["code"] == COUNT_CODE:
                            calls += 1
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    return Usage(calls, storage, gigabytes), records


@dataclass(frozen=True, slots=True)
class IngestLoad:
    """What both sides are sent: warm-up then measured batch bodies of `batch` events each,
    by `concurrency` clients, into storage already holding `stored_events` other events."""

    bodies: list[bytes]
    warmup: list[bytes]
    batch: int
    concurrency: int
    stored_events: int

    def sent(self) -> Usage:
        """Both body lists number their events from 0."""
        parts = [
            Usage.expected(len(self.bodies) * self.batch),
            Usage.expected(len(self.warmup) * self.batch),
        ]
        return Usage(
            sum(u.calls for u in parts),
            sum(u.storage_events for u in parts),
            sum((u.gigabytes for u in parts), Decimal(0)),
        )


def latency_ms(result: LoadResult) -> tuple[float, float]:
    return report.p50(result.latencies) * 1000, report.p99(result.latencies) * 1000


def check_load(side: str, result: LoadResult, batches: int) -> None:
    if result.errors or result.accepted_batches != batches:
        raise WrongTotals(
            f"{side}: {result.accepted_batches} of {batches} batches accepted; "
            f"first errors: {result.errors[:3]}"
        )


async def ingest_meterflow(base: Settings, load: IngestLoad) -> LoadResult:
    """Batches through meterflow's own ingest app to Kafka (acks=all, idempotent producer)."""
    settings = isolated(base)
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        if load.stored_events:
            await produce_events(settings, str(uuid.uuid4()), stored_events(load.stored_events))
        _, key = await create_organization(settings, "bench")
        config = IngestSettings(host="127.0.0.1", port=0, metrics_port=0)
        async with IngestServer(settings, config) as server:
            url = server.url + "/api/v1/events/batch"
            check_load(
                "meterflow warm-up", await post_batches(url, key, load.warmup, 2), len(load.warmup)
            )
            result = await post_batches(url, key, load.bodies, load.concurrency)
        check_load("meterflow ingest", result, len(load.bodies))
        stored, _ = await topic_usage(settings, settings.topics.events)
        load.sent().check("meterflow ingest", "all", stored)
        return result
    finally:
        await delete_topics(settings.bootstrap_servers, settings.topics)
        await drop_schema(settings, settings.db_schema)


async def ingest_baseline(base: Settings, load: IngestLoad) -> LoadResult:
    """The same bodies to the baseline endpoint: one INSERT per batch, answered after commit."""
    schema = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    await baseline.create_schema(base.dsn, schema)
    try:
        organization_id, key = str(uuid.uuid4()), uuid.uuid4().hex
        conn = await connect(base.dsn, schema=schema)
        try:
            if load.stored_events:
                await copy_rows(conn, str(uuid.uuid4()), stored_events(load.stored_events))
            await baseline.add_api_key(conn, key, organization_id)
            server = baseline.BaselineServer(
                base.dsn, schema, CHARGES, current_period(datetime.now(UTC))
            )
            async with server:
                url = server.url + "/api/v1/events/batch"
                check_load(
                    "baseline warm-up",
                    await post_batches(url, key, load.warmup, 2),
                    len(load.warmup),
                )
                result = await post_batches(url, key, load.bodies, load.concurrency)
            check_load("baseline ingest", result, len(load.bodies))
            total, stored_sum, gigabytes = await baseline.stored_totals(
                conn, organization_id, SUM_CODE, SUM_FIELD
            )
        finally:
            await conn.close()
        stored = Usage(total - stored_sum, stored_sum, gigabytes)
        load.sent().check("baseline ingest", "all", stored)
        return result
    finally:
        await baseline.drop_schema(base.dsn, schema)
