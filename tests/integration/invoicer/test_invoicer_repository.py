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


async def _wallet(kit: Any, customer_id: str, cents: int) -> None:
    await kit.db.execute(
        "INSERT INTO wallets (id, organization_id, customer_id, currency, rate_amount, "
        "balance_cents) SELECT gen_random_uuid(), organization_id, id, 'EUR', 1, $2 "
        "FROM customers WHERE id = $1::uuid",
        customer_id,
        cents,
    )


async def test_a_batch_is_written_whole_or_not_at_all(kit: Any, settings: Settings) -> None:
    """One read and one write for several customers' invoices, their wallets paying; a
    wallet changed after the read refuses the whole batch (nothing written, no number used),
    and the batch read again is written whole."""
    catalogs = [await kit.catalog() for _ in range(3)]
    for catalog in catalogs:
        await _wallet(kit, catalog.customer_id, 500)
    messages = [
        parse_period_closed(orjson.dumps(c.closed(utc(2026, 2, 1), utc(2026, 3, 1), [])))
        for c in catalogs
    ]
    pool = await write.create_pool(settings.dsn, schema=settings.db_schema, size=2)
    try:
        async with pool.acquire() as conn:

            async def priced() -> list[write.InvoiceToWrite]:
                found = await terms.load_many(conn, messages)
                return [
                    write.InvoiceToWrite(m, loaded, price_period(m, loaded.terms, {}))
                    for m, loaded in zip(messages, found, strict=True)
                    if loaded is not None
                ]

            batch = await priced()
            assert [len(i.priced.wallet_uses) for i in batch] == [1, 1, 1]
            # A top-up of the last customer's wallet lands between the read and the write.
            await kit.db.execute(
                "UPDATE wallets SET balance_cents = 900 WHERE customer_id = $1::uuid",
                catalogs[-1].customer_id,
            )
            with pytest.raises(write.CreditsChanged):
                await write.write_invoices(conn, batch)
            assert await kit.invoices() == 0
            assert await kit.db.fetchval("SELECT count(*) FROM invoice_sequences") == 0
            assert await kit.db.fetchval("SELECT sum(balance_cents) FROM wallets") == 1900
            await write.write_invoices(conn, await priced())
    finally:
        await pool.close()
    rows = await kit.db.fetch(
        "SELECT prepaid_credit_amount_cents, total_amount_cents, sequential_id FROM invoices"
    )
    # Each February invoice of 10.00 is paid by its wallet: 5.00, 5.00 and 9.00.
    assert sorted(r["prepaid_credit_amount_cents"] for r in rows) == [500, 500, 900]
    assert sorted(r["total_amount_cents"] for r in rows) == [100, 500, 500]
    assert {r["sequential_id"] for r in rows} == {1}
    assert await kit.db.fetchval("SELECT count(*) FROM wallet_transactions") == 3
    assert await kit.db.fetchval("SELECT count(*) FROM fees") == 3
