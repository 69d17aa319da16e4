"""The invoice write on its own: atomic, refused whole for a period already invoiced (a
concurrent redelivery), without burning a sequential id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from invoicing import terms, write
from invoicing.closed_period import parse_period_closed
from invoicing.pricing import price_period
from meterflow.settings import Settings


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_a_second_write_for_the_period_changes_nothing(kit: Any, settings: Settings) -> None:
    catalog = await kit.catalog()
    pool = await write.create_pool(settings.dsn, schema=settings.db_schema, size=2)
    try:
        january = parse_period_closed(
            orjson.dumps(
                catalog.closed(
                    utc(2026, 1, 15, 10),
                    utc(2026, 2, 1),
                    [catalog.usage(catalog.graduated_charge, "graduated", 250)],
                )
            )
        )
        async with pool.acquire() as conn:
            loaded = await terms.load(conn, january)
            assert not loaded.already_invoiced
            priced = price_period(january, loaded.terms, {})
            # Two consumers raced past the duplicate check: the second write must fail whole.
            await write.insert_invoice(conn, january, loaded, priced)
            with pytest.raises(write.AlreadyInvoiced):
                await write.insert_invoice(conn, january, loaded, priced)
            assert (await terms.load(conn, january)).already_invoiced
            february = parse_period_closed(
                orjson.dumps(catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), []))
            )
            loaded = await terms.load(conn, february)
            await write.insert_invoice(
                conn, february, loaded, price_period(february, loaded.terms, {})
            )
    finally:
        await pool.close()
    rows = await kit.db.fetch("SELECT sequential_id, number FROM invoices ORDER BY period_start")
    assert [r["sequential_id"] for r in rows] == [1, 2]
    assert rows[1]["number"].endswith("-001-002")
    assert await kit.db.fetchval("SELECT count(*) FROM fees") == 2 + 1
