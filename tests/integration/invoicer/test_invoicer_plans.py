"""The invoicer's batch read looks `invoices` and `fees` up by key whatever the statistics
say. Planned while they were analyzed empty (a new deployment), a session without the
invoicer's settings scans them whole for every period of a batch, and keeps that plan until
the next ANALYZE however the tables grow (`bench.invoicer_throughput --analyzed`: 1,200
invoices/s against 10,300)."""

from __future__ import annotations

import asyncpg

from invoicing import terms, write
from meterflow.settings import Settings


async def _plan(conn: asyncpg.Connection) -> str:
    # (The protocol binds the statement's 7 parameters; GENERIC_PLAN plans without them.)
    rows = await conn.fetch("EXPLAIN (GENERIC_PLAN) " + terms._TERMS, *[None] * 7)
    return "\n".join(row[0] for row in rows)


async def test_the_batch_read_probes_invoices_and_fees_by_key_after_an_empty_analyze(
    settings: Settings, db: asyncpg.Connection
) -> None:
    await db.execute("ANALYZE")  # every table of the test's schema, all empty
    scans = ("Seq Scan on invoices", "Seq Scan on fees")
    # What any session plans on these statistics: the hazard.
    hazard = await _plan(db)
    assert all(scan in hazard for scan in scans), hazard
    pool = await write.create_pool(settings.dsn, schema=settings.db_schema, size=1)
    try:
        async with pool.acquire() as conn:
            plan = await _plan(conn)
    finally:
        await pool.close()
    assert not [scan for scan in scans if scan in plan], plan
    assert "invoices_period_key_key" in plan and "fees_usage" in plan, plan
