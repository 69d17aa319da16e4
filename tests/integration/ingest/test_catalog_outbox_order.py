"""The catalog outbox is drained by one drain at a time across every ingest process of a
deployment, so an object's versions reach the compacted topic in the order they were
written (with several workers, two drains could otherwise send v2 before v1, and
compaction would keep v1)."""

from __future__ import annotations

import asyncio
import uuid

from meterflow import db
from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.db import create_pool
from meterflow.settings import Settings
from store import database
from store.catalog_publisher import claim_outbox, delete_outbox, enqueue


def _record(lago_id: str, organization_id: str, version: int) -> CatalogRecord:
    return CatalogRecord(
        kind=CatalogKind.CUSTOMER,
        lago_id=lago_id,
        organization_id=organization_id,
        version=version,
        body={},
    )


async def test_a_second_drain_waits_for_the_first_and_finds_its_records_gone(
    settings: Settings,
) -> None:
    pool = await database.create_pool(settings.dsn, schema=settings.db_schema, size=3)
    other_schema = await create_pool(settings.dsn, size=1)  # another deployment's drains
    try:
        lago_id, organization_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with db.unit_of_work(pool) as conn:
            for version in (1, 2):
                await enqueue(conn, _record(lago_id, organization_id, version))
        async with db.unit_of_work(pool) as first:
            claimed = await claim_outbox(first, 10)
            assert [r.version for _, r in claimed] == [1, 2]

            async def second_drain() -> list[int]:
                async with db.unit_of_work(pool) as conn:
                    return [r.version for _, r in await claim_outbox(conn, 10)]

            waiting = asyncio.create_task(second_drain())
            await asyncio.sleep(0.5)
            assert not waiting.done(), "a second drain must wait, not skip to later records"
            async with other_schema.acquire() as conn:  # the lock is per schema
                await asyncio.wait_for(
                    conn.fetchval(
                        "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
                        0x6D66_6361,
                    ),
                    5,
                )
                await conn.execute("SELECT pg_advisory_unlock_all()")
            await delete_outbox(first, [outbox_id for outbox_id, _ in claimed])
        assert await asyncio.wait_for(waiting, 10) == []
    finally:
        await pool.close()
        await other_schema.close()
