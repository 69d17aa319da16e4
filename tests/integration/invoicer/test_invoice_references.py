"""The references of invoices and fees (migration 0080), checked once per statement: what the
foreign keys refused is still refused, and what they cascaded still cascades; the checks
probe each inserted row's references by primary key (migration 0081)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from .conftest import Catalog, insert_catalog

_INVOICE = (
    "INSERT INTO invoices (id, organization_id, customer_id, subscription_id, period_key, "
    "sequential_id, number, status, currency, issuing_date, period_start, period_end, "
    "fees_amount_cents, sub_total_excluding_taxes_amount_cents, "
    "sub_total_including_taxes_amount_cents, total_amount_cents) VALUES ($1, $2, $3, $4, $5, "
    "$6, $5, 'finalized', 'EUR', '2026-02-01', now(), now(), 100, 100, 100, 100)"
)
_FEE = (
    "INSERT INTO fees (id, invoice_id, subscription_id, position, fee_type, item_code, "
    "item_name, amount_cents, precise_amount, currency, units, from_date, to_date, add_on_id) "
    "VALUES ($1, $2, NULL, 0, 'charge', 'x', 'X', 100, 1, 'EUR', 1, now(), now(), $3)"
)


async def _invoice(
    db: asyncpg.Connection,
    catalog: Catalog,
    *,
    customer: str | None = None,
    subscription: str | None = None,
    sequence: int = 1,
) -> uuid.UUID:
    invoice = uuid.uuid4()
    await db.execute(
        _INVOICE,
        invoice,
        uuid.UUID(catalog.organization_id),
        uuid.UUID(customer or catalog.customer_id),
        None if subscription == "" else uuid.UUID(subscription or catalog.subscription_id),
        f"key-{invoice}",
        sequence,
    )
    return invoice


async def test_an_invoice_or_fee_naming_what_does_not_exist_is_refused(
    db: asyncpg.Connection,
) -> None:
    catalog = await insert_catalog(db)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await _invoice(db, catalog, customer=str(uuid.uuid4()))
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await _invoice(db, catalog, subscription=str(uuid.uuid4()))
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await db.execute(_FEE, uuid.uuid4(), uuid.uuid4(), None)
    invoice = await _invoice(db, catalog)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await db.execute(_FEE, uuid.uuid4(), invoice, uuid.uuid4())
    one_off = await _invoice(db, catalog, subscription="", sequence=2)  # no subscription: fine
    await db.execute(_FEE, uuid.uuid4(), one_off, None)
    assert await db.fetchval("SELECT count(*) FROM invoices") == 2
    # An update that sets a reference is checked too (a one-off invoice's fee gets its
    # add-on so).
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await db.execute(
            "UPDATE invoices SET customer_id = $1 WHERE id = $2", uuid.uuid4(), invoice
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await db.execute("UPDATE fees SET add_on_id = $1", uuid.uuid4())
    await db.execute("UPDATE fees SET invoice_id = $1", invoice)
    # An update that sets a reference to what it is changes nothing and passes.
    await db.execute(
        "UPDATE invoices SET customer_id = customer_id, status = 'finalized' WHERE id = $1",
        invoice,
    )


async def test_deletes_refuse_or_cascade_as_the_foreign_keys_did(db: asyncpg.Connection) -> None:
    catalog = await insert_catalog(db)
    invoice = await _invoice(db, catalog)
    await db.execute(_FEE, uuid.uuid4(), invoice, None)
    # A customer without subscriptions, invoiced once (a one-off invoice).
    customer = uuid.uuid4()
    await db.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, currency) "
        "VALUES ($1, $2, 'one-off', 2, 'EUR')",
        customer,
        uuid.UUID(catalog.organization_id),
    )
    await _invoice(db, catalog, customer=str(customer), subscription="")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still has invoices"):
        await db.execute("DELETE FROM customers WHERE id = $1", customer)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still has invoices"):
        await db.execute(
            "DELETE FROM subscriptions WHERE id = $1", uuid.UUID(catalog.subscription_id)
        )
    add_on = uuid.uuid4()
    await db.execute(
        "INSERT INTO add_ons (id, organization_id, code, name, amount_cents, amount_currency) "
        "VALUES ($1, $2, 'setup', 'Setup', 100, 'EUR')",
        add_on,
        uuid.UUID(catalog.organization_id),
    )
    await db.execute(_FEE, uuid.uuid4(), invoice, add_on)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="billed by fees"):
        await db.execute("DELETE FROM add_ons WHERE id = $1", add_on)
    # An invoice's fees go with it; an organization's invoices (and their fees) with it.
    await db.execute("DELETE FROM invoices WHERE id = $1", invoice)
    assert await db.fetchval("SELECT count(*) FROM fees") == 0
    # An organization's invoices (and their fees) go with it: one with a customer invoiced
    # once (nothing else of its catalog, whose own foreign keys would refuse the delete).
    organization, customer = uuid.uuid4(), uuid.uuid4()
    await db.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Gone')", organization)
    await db.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, currency) "
        "VALUES ($1, $2, 'gone', 1, 'EUR')",
        customer,
        organization,
    )
    gone = Catalog(**{**vars(catalog), "organization_id": str(organization)})
    other = await _invoice(db, gone, customer=str(customer), subscription="")
    await db.execute(_FEE, uuid.uuid4(), other, None)
    await db.execute("DELETE FROM organizations WHERE id = $1", organization)
    assert await db.fetchval("SELECT count(*) FROM invoices WHERE id = $1", other) == 0
    assert await db.fetchval("SELECT count(*) FROM fees WHERE invoice_id = $1", other) == 0
    assert await db.fetchval("SELECT count(*) FROM invoices") == 1  # the other customer's


async def test_a_statement_reads_no_referenced_table_whole(db: asyncpg.Connection) -> None:
    """A statement of a thousand invoices and their fees finds each one's customer,
    subscription and invoice by its primary key: as NOT EXISTS under OR, Postgres ran the
    checks as hashed subplans, which read the customers, subscriptions and invoices tables
    whole at every statement (a cost growing with the tables, not with the rows written)."""
    catalog = await insert_catalog(db)
    org, plan = uuid.UUID(catalog.organization_id), uuid.UUID(catalog.plan_id)
    await db.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, currency) "
        "SELECT gen_random_uuid(), $1, 'c-' || n, n + 1, 'EUR' FROM generate_series(1, 1000) n",
        org,
    )
    await db.execute(
        "INSERT INTO subscriptions (id, organization_id, external_id, customer_id, plan_id, "
        "billing_time, subscription_at, started_at, status) SELECT gen_random_uuid(), $1, "
        "'s-' || c.external_id, c.id, $2, 'calendar', now(), now(), 'active' FROM customers c "
        "WHERE c.external_id LIKE 'c-%'",
        org,
        plan,
    )
    pairs = await db.fetch("SELECT id, customer_id FROM subscriptions WHERE external_id LIKE 's-%'")
    invoices = [uuid.uuid4() for _ in pairs]

    async def scans() -> dict[str, tuple[int, int]]:
        """Sequential and index scans of each referenced table in this transaction so far
        (the test's connection runs in one: the catalog's inserts are counted too)."""
        rows = await db.fetch(
            "SELECT relname, seq_scan, idx_scan FROM pg_stat_xact_user_tables "
            "WHERE schemaname = current_schema() "
            "AND relname IN ('customers', 'subscriptions', 'invoices')"
        )
        return {row["relname"]: (row["seq_scan"], row["idx_scan"]) for row in rows}

    async with db.transaction():
        before = await scans()
        await db.execute(
            "INSERT INTO invoices (id, organization_id, customer_id, subscription_id, "
            "period_key, sequential_id, number, status, currency, issuing_date, period_start, "
            "period_end, fees_amount_cents, sub_total_excluding_taxes_amount_cents, "
            "sub_total_including_taxes_amount_cents, total_amount_cents) "
            "SELECT i, $1, c, s, 'key-' || s, 1, 'N-' || s, 'finalized', 'EUR', '2026-02-01', "
            "now(), now(), 100, 100, 100, 100 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[]) "
            "AS r(i, s, c)",
            org,
            invoices,
            [p["id"] for p in pairs],
            [p["customer_id"] for p in pairs],
        )
        await db.execute(
            "INSERT INTO fees (id, invoice_id, position, fee_type, item_code, item_name, "
            "amount_cents, precise_amount, currency, units, from_date, to_date) "
            "SELECT gen_random_uuid(), i, p, 'charge', 'x', 'X', 100, 1, 'EUR', 1, now(), now() "
            "FROM unnest($1::uuid[]) AS i, generate_series(0, 2) AS p",
            invoices,
        )
        after = await scans()
    done = {
        name: (seq - before[name][0], index - before[name][1])
        for name, (seq, index) in after.items()
    }
    # Each row's reference found by an index probe (3,000 fees for 1,000 invoices), none by
    # a sequential scan.
    assert done == {
        "customers": (0, 1000),
        "subscriptions": (0, 1000),
        "invoices": (0, 3000),
    }, done
