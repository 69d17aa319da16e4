"""The real broker and database the other tests stand on: produce and consume through Kafka
with acks=all, and write and read Postgres through asyncpg in a migrated schema."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from meterflow.db import connect, create_pool, migrate, migration_files
from meterflow.settings import Settings


async def test_kafka_round_trip_with_acks_all(settings: Settings, unique: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = []
        for i in range(50):
            key = f"sub-{i % 5}".encode()
            value = orjson.dumps({"transaction_id": f"tx-{i}", "n": i})
            meta = await producer.send_and_wait(settings.topics.events, value, key=key)
            sent.append((meta.partition, meta.offset, key, value))
    finally:
        await producer.stop()
    assert len({(p, o) for p, o, _, _ in sent}) == 50, "every send got its own offset"

    consumer = AIOKafkaConsumer(
        settings.topics.events,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"test-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received = []
        while len(received) < 50:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"consumed only {len(received)} of 50 messages before a 5 s silence"
            for records in batch.values():
                received.extend((r.partition, r.offset, r.key, r.value) for r in records)
        await consumer.commit()
        committed = {
            p: await consumer.committed(TopicPartition(settings.topics.events, p))
            for p in {p for p, _, _, _ in sent}
        }
    finally:
        await consumer.stop()
    assert sorted(received) == sorted(sent)
    # One key always lands on one partition: a subscription's events stay in order.
    partitions_by_key: dict[bytes, set[int]] = {}
    for partition, _, key, _ in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    for partition, offset in committed.items():
        assert offset == 1 + max(o for p, o, _, _ in sent if p == partition)


async def test_postgres_schema_is_migrated_and_isolated(
    settings: Settings, db: asyncpg.Connection
) -> None:
    names = [r["name"] for r in await db.fetch("SELECT name FROM schema_migrations ORDER BY 1")]
    assert names == [name for name, _ in migration_files()]
    assert await migrate(settings.dsn, schema=settings.db_schema) == [], "a second run is a no-op"

    org_id = await db.fetchval(
        "INSERT INTO organizations (id, name, timezone) "
        "VALUES (gen_random_uuid(), 'Acme', 'Asia/Tokyo') RETURNING id"
    )
    row = await db.fetchrow("SELECT name, timezone FROM organizations WHERE id = $1", org_id)
    assert dict(row) == {"name": "Acme", "timezone": "Asia/Tokyo"}

    other = await connect(settings.dsn)  # the public schema: this test's rows are not there
    try:
        seen = await other.fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_name = 'organizations'",
            settings.db_schema,
        )
        assert seen == 1
        assert await other.fetchval("SHOW search_path") != settings.db_schema
    finally:
        await other.close()


async def test_a_pooled_connection_goes_back_without_a_reset_query(settings: Settings) -> None:
    """Pools release a connection with no statement of asyncpg's reset (`db._keep_session`):
    what a transaction set with SET LOCAL is gone at its end anyway, and the schema stays."""
    pool = await create_pool(settings.dsn, schema=settings.db_schema, size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: sent.append(logged.query))
            async with conn.transaction():
                await conn.execute("SET LOCAL work_mem = '7MB'")
            await asyncio.sleep(0.05)  # (asyncpg calls the loggers soon, not at once)
            before_release = list(sent)
        await asyncio.sleep(0.05)
        assert before_release[-1] == "COMMIT;"
        assert sent == before_release, "releasing the connection sent a statement"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW work_mem") != "7MB"
            assert await conn.fetchval("SHOW search_path") == settings.db_schema
    finally:
        await pool.close()
