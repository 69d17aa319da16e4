"""Postgres access of the Lago resources (asyncpg): organizations, the catalog tables and
the catalog outbox. Every request runs in one transaction (see `meterflow.db.unit_of_work`)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow import db
from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.db import Conn, unit_of_work
from web.context import Organization

__all__ = ["Conn", "unit_of_work"]

Row = asyncpg.Record


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(dsn, schema=schema, size=size, init=db.use_orjson)


async def claim_name(conn: Conn, org: uuid.UUID, kind: str, name: str) -> None:
    """Serialise, until the transaction ends, every request creating or renaming a `kind`
    called `name` in this organization: check-then-insert cannot race into a duplicate."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{org}:{kind}:{name}"
    )


# --- organizations and API keys ---------------------------------------------------------


async def insert_organization(
    conn: Conn, name: str, timezone: str, key_digest: bytes
) -> Organization:
    org_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO organizations (id, name, timezone) VALUES ($1, $2, $3)", org_id, name, timezone
    )
    await conn.execute(
        "INSERT INTO api_keys (id, organization_id, key_digest) VALUES ($1, $2, $3)",
        uuid.uuid4(),
        org_id,
        key_digest,
    )
    return Organization(org_id, name, timezone)


# --- the outbox -------------------------------------------------------------------------


async def enqueue(conn: Conn, record: CatalogRecord) -> None:
    await conn.execute(
        "INSERT INTO catalog_outbox (kind, lago_id, organization_id, version, body) "
        "VALUES ($1, $2, $3, $4, $5)",
        record.kind.value,
        uuid.UUID(record.lago_id),
        uuid.UUID(record.organization_id),
        record.version,
        record.body,
    )


async def claim_outbox(conn: Conn, limit: int) -> list[tuple[int, CatalogRecord]]:
    """The oldest unsent records, locked so that concurrent drains skip them."""
    rows = await conn.fetch(
        "SELECT id, kind, lago_id, organization_id, version, body FROM catalog_outbox "
        "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        (
            r["id"],
            CatalogRecord(
                kind=CatalogKind(r["kind"]),
                lago_id=str(r["lago_id"]),
                organization_id=str(r["organization_id"]),
                version=r["version"],
                body=r["body"],
            ),
        )
        for r in rows
    ]


async def delete_outbox(conn: Conn, ids: list[int]) -> None:
    await conn.execute("DELETE FROM catalog_outbox WHERE id = ANY($1::bigint[])", ids)


# --- customers --------------------------------------------------------------------------

_CUSTOMER = (
    "SELECT c.*, o.timezone AS organization_timezone FROM customers c "
    "JOIN organizations o ON o.id = c.organization_id "
)


async def customer(
    conn: Conn, org: uuid.UUID, external_id: str, *, lock: bool = False
) -> Row | None:
    sql = _CUSTOMER + "WHERE c.organization_id = $1 AND c.external_id = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE OF c" if lock else ""), org, external_id)


async def customer_by_id(conn: Conn, customer_id: uuid.UUID) -> Row:
    row = await conn.fetchrow(_CUSTOMER + "WHERE c.id = $1", customer_id)
    assert row is not None
    return row


async def insert_customer(
    conn: Conn, org: uuid.UUID, external_id: str, columns: dict[str, Any]
) -> uuid.UUID:
    customer_id = uuid.uuid4()
    # Serialise sequential ids per organization (two concurrent creates must not share one).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(org))
    await conn.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, name, email, "
        "currency, timezone, attributes) VALUES ($1, $2, $3, (SELECT coalesce(max(sequential_id)"
        ", 0) + 1 FROM customers WHERE organization_id = $2), $4, $5, $6, $7, $8)",
        customer_id,
        org,
        external_id,
        columns["name"],
        columns["email"],
        columns["currency"],
        columns["timezone"],
        columns["attributes"],
    )
    return customer_id


async def update_customer(conn: Conn, customer_id: uuid.UUID, columns: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE customers SET name = $2, email = $3, currency = $4, timezone = $5, "
        "attributes = $6, version = version + 1, updated_at = now() WHERE id = $1",
        customer_id,
        columns["name"],
        columns["email"],
        columns["currency"],
        columns["timezone"],
        columns["attributes"],
    )


async def delete_customer(conn: Conn, customer_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE customers SET deleted_at = now(), version = version + 1, updated_at = now() "
        "WHERE id = $1",
        customer_id,
    )


async def customer_by_lago_id(
    conn: Conn, org: uuid.UUID, customer_id: uuid.UUID, *, lock: bool = False
) -> Row | None:
    sql = _CUSTOMER + "WHERE c.organization_id = $1 AND c.id = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE OF c" if lock else ""), org, customer_id)


async def rename_customer(conn: Conn, customer_id: uuid.UUID, external_id: str) -> None:
    await conn.execute(
        "UPDATE customers SET external_id = $2, version = version + 1, updated_at = now() "
        "WHERE id = $1",
        customer_id,
        external_id,
    )


async def customer_assignment(conn: Conn, customer_id: uuid.UUID) -> str | None:
    """The first kind of object assigned to the customer (`subscription`, `coupon`,
    `wallet` or `invoice`, ended ones included), or None when nothing is."""
    found: str | None = await conn.fetchval(
        "SELECT CASE "
        "WHEN EXISTS (SELECT 1 FROM subscriptions WHERE customer_id = $1) THEN 'subscription' "
        "WHEN EXISTS (SELECT 1 FROM applied_coupons WHERE customer_id = $1) THEN 'coupon' "
        "WHEN EXISTS (SELECT 1 FROM wallets WHERE customer_id = $1) THEN 'wallet' "
        "WHEN EXISTS (SELECT 1 FROM invoices WHERE customer_id = $1) THEN 'invoice' END",
        customer_id,
    )
    return found


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_customers(
    conn: Conn, org: uuid.UUID, limit: int, offset: int, search_term: str | None = None
) -> tuple[list[Row], int]:
    """A page of live customers, newest first; `search_term` (Lago's) keeps those whose
    name, first or last name, legal name, external id or email contains it."""
    where = "WHERE c.organization_id = $1 AND c.deleted_at IS NULL "
    args: list[Any] = [org]
    if search_term:
        # search_text: those fields lowercased in one column (migration 0021)
        where += "AND c.search_text LIKE $2 "
        args.append(_like(search_term.lower()))
    total = await conn.fetchval("SELECT count(*) FROM customers c " + where, *args)
    n = len(args)
    rows = await conn.fetch(
        _CUSTOMER + where + f"ORDER BY c.created_at DESC, c.id LIMIT ${n + 1} OFFSET ${n + 2}",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


# --- billable metrics -------------------------------------------------------------------


async def billable_metric(
    conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False
) -> Row | None:
    sql = (
        "SELECT * FROM billable_metrics WHERE organization_id = $1 AND code = $2 "
        "AND deleted_at IS NULL"
    )
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


async def billable_metrics_by_ids(
    conn: Conn, org: uuid.UUID, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Row]:
    rows = await conn.fetch(
        "SELECT * FROM billable_metrics WHERE organization_id = $1 AND id = ANY($2::uuid[]) "
        "AND deleted_at IS NULL",
        org,
        ids,
    )
    return {r["id"]: r for r in rows}


async def billable_metric_by_id(conn: Conn, metric_id: uuid.UUID) -> Row:
    row = await conn.fetchrow("SELECT * FROM billable_metrics WHERE id = $1", metric_id)
    assert row is not None
    return row


async def insert_billable_metric(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    metric_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO billable_metrics (id, organization_id, code, name, aggregation_type, "
        "field_name, recurring, filters, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        metric_id,
        org,
        columns["code"],
        columns["name"],
        columns["aggregation_type"],
        columns["field_name"],
        columns["recurring"],
        columns["filters"],
        columns["attributes"],
    )
    return metric_id


async def update_billable_metric(conn: Conn, metric_id: uuid.UUID, columns: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE billable_metrics SET code = $2, name = $3, aggregation_type = $4, "
        "field_name = $5, recurring = $6, filters = $7, attributes = $8, "
        "version = version + 1, updated_at = now() WHERE id = $1",
        metric_id,
        columns["code"],
        columns["name"],
        columns["aggregation_type"],
        columns["field_name"],
        columns["recurring"],
        columns["filters"],
        columns["attributes"],
    )


async def plans_using_metric(conn: Conn, metric_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT DISTINCT plan_id FROM charges WHERE billable_metric_id = $1", metric_id
    )
    return [r["plan_id"] for r in rows]


async def delete_billable_metric(conn: Conn, metric_id: uuid.UUID) -> list[uuid.UUID]:
    """Soft-delete the metric and remove its charges; returns the plans that lost one."""
    plans = await plans_using_metric(conn, metric_id)
    await conn.execute("DELETE FROM charges WHERE billable_metric_id = $1", metric_id)
    await conn.execute(
        "UPDATE billable_metrics SET deleted_at = now(), version = version + 1, "
        "updated_at = now() WHERE id = $1",
        metric_id,
    )
    return plans


async def list_billable_metrics(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[Row], int]:
    total = await conn.fetchval(
        "SELECT count(*) FROM billable_metrics WHERE organization_id = $1 AND deleted_at IS NULL",
        org,
    )
    rows = await conn.fetch(
        "SELECT * FROM billable_metrics WHERE organization_id = $1 AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        org,
        limit,
        offset,
    )
    return list(rows), int(total)


# --- plans and charges ------------------------------------------------------------------


async def plan(conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False) -> Row | None:
    sql = "SELECT * FROM plans WHERE organization_id = $1 AND code = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


async def plan_by_id(conn: Conn, plan_id: uuid.UUID) -> Row:
    row = await conn.fetchrow("SELECT * FROM plans WHERE id = $1", plan_id)
    assert row is not None
    return row


async def insert_plan(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    plan_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO plans (id, organization_id, code, name, interval, amount_cents, "
        "amount_currency, pay_in_advance, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        plan_id,
        org,
        columns["code"],
        columns["name"],
        columns["interval"],
        columns["amount_cents"],
        columns["amount_currency"],
        columns["pay_in_advance"],
        columns["attributes"],
    )
    return plan_id


async def update_plan(conn: Conn, plan_id: uuid.UUID, columns: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE plans SET code = $2, name = $3, interval = $4, amount_cents = $5, "
        "amount_currency = $6, pay_in_advance = $7, attributes = $8, version = version + 1, "
        "updated_at = now() WHERE id = $1",
        plan_id,
        columns["code"],
        columns["name"],
        columns["interval"],
        columns["amount_cents"],
        columns["amount_currency"],
        columns["pay_in_advance"],
        columns["attributes"],
    )


async def bump_plan(conn: Conn, plan_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE plans SET version = version + 1, updated_at = now() WHERE id = $1", plan_id
    )


async def delete_plan(conn: Conn, plan_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE plans SET deleted_at = now(), version = version + 1, updated_at = now() "
        "WHERE id = $1",
        plan_id,
    )


async def plan_in_use(conn: Conn, plan_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM subscriptions WHERE plan_id = $1 AND status IN ('active', 'pending') "
        "LIMIT 1",
        plan_id,
    )
    return found is not None


async def list_plans(conn: Conn, org: uuid.UUID, limit: int, offset: int) -> tuple[list[Row], int]:
    total = await conn.fetchval(
        "SELECT count(*) FROM plans WHERE organization_id = $1 AND deleted_at IS NULL", org
    )
    rows = await conn.fetch(
        "SELECT * FROM plans WHERE organization_id = $1 AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        org,
        limit,
        offset,
    )
    return list(rows), int(total)


async def charges_of(conn: Conn, plan_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Row]]:
    """Each plan's charges in order, with their billable metric's code."""
    rows = await conn.fetch(
        "SELECT ch.*, bm.code AS billable_metric_code FROM charges ch "
        "JOIN billable_metrics bm ON bm.id = ch.billable_metric_id "
        "WHERE ch.plan_id = ANY($1::uuid[]) ORDER BY ch.plan_id, ch.position",
        plan_ids,
    )
    out: dict[uuid.UUID, list[Row]] = {p: [] for p in plan_ids}
    for r in rows:
        out[r["plan_id"]].append(r)
    return out


async def replace_charges(conn: Conn, plan_id: uuid.UUID, charges: list[dict[str, Any]]) -> None:
    """Make the plan's charges exactly `charges`: an entry whose `id` names one of the plan's
    charges updates it (keeping its lago_id), others are created, the rest are removed.
    An entry's `tax_ids`, when not None, become the charge's own taxes."""
    keep = [c["id"] for c in charges if c["id"] is not None]
    await conn.execute(
        "DELETE FROM charges WHERE plan_id = $1 AND NOT (id = ANY($2::uuid[]))", plan_id, keep
    )
    for position, c in enumerate(charges):
        charge_id = c["id"] or uuid.uuid4()
        await conn.execute(
            "INSERT INTO charges (id, plan_id, billable_metric_id, position, charge_model, "
            "pay_in_advance, invoiceable, prorated, min_amount_cents, properties, filters, "
            "attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (id) DO UPDATE SET billable_metric_id = EXCLUDED.billable_metric_id, "
            "position = EXCLUDED.position, charge_model = EXCLUDED.charge_model, "
            "pay_in_advance = EXCLUDED.pay_in_advance, invoiceable = EXCLUDED.invoiceable, "
            "prorated = EXCLUDED.prorated, min_amount_cents = EXCLUDED.min_amount_cents, "
            "properties = EXCLUDED.properties, filters = EXCLUDED.filters, "
            "attributes = EXCLUDED.attributes",
            charge_id,
            plan_id,
            c["billable_metric_id"],
            position,
            c["charge_model"],
            c["pay_in_advance"],
            c["invoiceable"],
            c["prorated"],
            c["min_amount_cents"],
            c["properties"],
            c["filters"],
            c["attributes"],
        )
        if c.get("tax_ids") is not None:
            await conn.execute("DELETE FROM charge_taxes WHERE charge_id = $1", charge_id)
            await conn.execute(
                "INSERT INTO charge_taxes (charge_id, tax_id) SELECT $1, unnest($2::uuid[])",
                charge_id,
                c["tax_ids"],
            )


async def charge_ids_of(conn: Conn, plan_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM charges WHERE plan_id = $1", plan_id)
    return {r["id"] for r in rows}


# --- subscriptions ----------------------------------------------------------------------

_SUBSCRIPTION = (
    "SELECT s.*, c.external_id AS external_customer_id, c.timezone AS customer_timezone, "
    "o.timezone AS organization_timezone, p.code AS plan_code, "
    "p.amount_cents AS plan_amount_cents, p.amount_currency AS plan_amount_currency, "
    "p.interval AS plan_interval "
    "FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
    "JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id "
)


async def subscription(
    conn: Conn, org: uuid.UUID, external_id: str, *, status: str | None = None
) -> Row | None:
    """The live subscription with this external id, else (or with `status`) the latest one."""
    if status is not None:
        return await conn.fetchrow(
            _SUBSCRIPTION + "WHERE s.organization_id = $1 AND s.external_id = $2 "
            "AND s.status = $3 ORDER BY s.created_at DESC LIMIT 1",
            org,
            external_id,
            status,
        )
    return await conn.fetchrow(
        _SUBSCRIPTION + "WHERE s.organization_id = $1 AND s.external_id = $2 "
        "ORDER BY (s.status IN ('active', 'pending')) DESC, s.created_at DESC LIMIT 1",
        org,
        external_id,
    )


async def subscription_by_id(conn: Conn, subscription_id: uuid.UUID) -> Row:
    row = await conn.fetchrow(_SUBSCRIPTION + "WHERE s.id = $1", subscription_id)
    assert row is not None
    return row


async def live_subscription_ids(conn: Conn, *, customer_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT id FROM subscriptions WHERE customer_id = $1 AND status IN ('active', 'pending')",
        customer_id,
    )
    return [r["id"] for r in rows]


async def live_subscription_ids_of_plan(conn: Conn, plan_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT id FROM subscriptions WHERE plan_id = $1 AND status IN ('active', 'pending')",
        plan_id,
    )
    return [r["id"] for r in rows]


async def insert_subscription(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    subscription_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO subscriptions (id, organization_id, external_id, customer_id, plan_id, "
        "name, billing_time, subscription_at, started_at, ending_at, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        subscription_id,
        org,
        columns["external_id"],
        columns["customer_id"],
        columns["plan_id"],
        columns["name"],
        columns["billing_time"],
        columns["subscription_at"],
        columns["started_at"],
        columns["ending_at"],
        columns["status"],
    )
    return subscription_id


async def update_subscription(
    conn: Conn, subscription_id: uuid.UUID, columns: dict[str, Any]
) -> None:
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
    await conn.execute(
        f"UPDATE subscriptions SET {sets}, version = version + 1, updated_at = now() WHERE id = $1",
        subscription_id,
        *columns.values(),
    )


async def bump_subscription(conn: Conn, subscription_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE subscriptions SET version = version + 1, updated_at = now() WHERE id = $1",
        subscription_id,
    )


async def list_subscriptions(
    conn: Conn,
    org: uuid.UUID,
    *,
    external_customer_id: str | None,
    plan_code: str | None,
    statuses: list[str],
    limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    where = (
        "WHERE s.organization_id = $1 AND ($2::text IS NULL OR c.external_id = $2) "
        "AND ($3::text IS NULL OR p.code = $3) AND s.status = ANY($4::text[]) "
    )
    args = (org, external_customer_id, plan_code, statuses)
    total = await conn.fetchval(
        "SELECT count(*) FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
        "JOIN plans p ON p.id = s.plan_id " + where,
        *args,
    )
    rows = await conn.fetch(
        _SUBSCRIPTION + where + "ORDER BY s.created_at DESC, s.id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


# --- taxes ------------------------------------------------------------------------------


async def tax(conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False) -> Row | None:
    sql = "SELECT * FROM taxes WHERE organization_id = $1 AND code = $2"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


async def known_tax_codes(conn: Conn, org: uuid.UUID, wanted: Any) -> set[str]:
    """Which of `wanted` (a request's `tax_codes`, if a list of strings) are this
    organization's taxes; no query when nothing is asked."""
    if not isinstance(wanted, list) or not wanted or not all(isinstance(c, str) for c in wanted):
        return set()
    rows = await conn.fetch(
        "SELECT code FROM taxes WHERE organization_id = $1 AND code = ANY($2::text[])",
        org,
        wanted,
    )
    return {r["code"] for r in rows}


async def taxes_by_codes(conn: Conn, org: uuid.UUID, codes: list[str]) -> list[Row]:
    rows = await conn.fetch(
        "SELECT * FROM taxes WHERE organization_id = $1 AND code = ANY($2::text[]) ORDER BY code",
        org,
        codes,
    )
    return list(rows)


async def insert_tax(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> Row:
    row = await conn.fetchrow(
        "INSERT INTO taxes (id, organization_id, code, name, rate, description, "
        "applied_to_organization) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        uuid.uuid4(),
        org,
        columns["code"],
        columns["name"],
        columns["rate"],
        columns["description"],
        columns["applied_to_organization"],
    )
    assert row is not None
    return row


async def update_tax(conn: Conn, tax_id: uuid.UUID, columns: dict[str, Any]) -> Row:
    row = await conn.fetchrow(
        "UPDATE taxes SET code = $2, name = $3, rate = $4, description = $5, "
        "applied_to_organization = $6, updated_at = now() WHERE id = $1 RETURNING *",
        tax_id,
        columns["code"],
        columns["name"],
        columns["rate"],
        columns["description"],
        columns["applied_to_organization"],
    )
    assert row is not None
    return row


async def delete_tax(conn: Conn, tax_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM taxes WHERE id = $1", tax_id)


async def list_taxes(conn: Conn, org: uuid.UUID, limit: int, offset: int) -> tuple[list[Row], int]:
    total = await conn.fetchval("SELECT count(*) FROM taxes WHERE organization_id = $1", org)
    rows = await conn.fetch(
        "SELECT * FROM taxes WHERE organization_id = $1 ORDER BY created_at DESC, id "
        "LIMIT $2 OFFSET $3",
        org,
        limit,
        offset,
    )
    return list(rows), int(total)


async def organization_taxes(conn: Conn, org: uuid.UUID) -> list[Row]:
    rows = await conn.fetch(
        "SELECT * FROM taxes WHERE organization_id = $1 AND applied_to_organization ORDER BY code",
        org,
    )
    return list(rows)


_TAX_LINKS = {
    "customer": ("customer_taxes", "customer_id"),
    "plan": ("plan_taxes", "plan_id"),
    "charge": ("charge_taxes", "charge_id"),
    "add_on": ("add_on_taxes", "add_on_id"),
}


async def taxes_of(conn: Conn, link: str, owner_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Row]]:
    """The taxes linked to each customer, plan or charge (`link` names which)."""
    table, column = _TAX_LINKS[link]
    rows = await conn.fetch(
        f"SELECT l.{column} AS owner_id, t.* FROM {table} l JOIN taxes t ON t.id = l.tax_id "
        f"WHERE l.{column} = ANY($1::uuid[]) ORDER BY t.code",
        owner_ids,
    )
    out: dict[uuid.UUID, list[Row]] = {owner: [] for owner in owner_ids}
    for r in rows:
        out[r["owner_id"]].append(r)
    return out


async def replace_taxes_of(
    conn: Conn, link: str, owner_id: uuid.UUID, tax_ids: list[uuid.UUID]
) -> None:
    table, column = _TAX_LINKS[link]
    await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", owner_id)
    await conn.execute(
        f"INSERT INTO {table} ({column}, tax_id) SELECT $1, unnest($2::uuid[])", owner_id, tax_ids
    )


# --- coupons and applied coupons --------------------------------------------------------

COUPON_COLUMNS = (
    "code",
    "name",
    "description",
    "coupon_type",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
    "frequency",
    "frequency_duration",
    "reusable",
    "expiration",
    "expiration_at",
)


async def coupon(conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False) -> Row | None:
    sql = "SELECT * FROM coupons WHERE organization_id = $1 AND code = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


async def insert_coupon(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> Row:
    names = ", ".join(COUPON_COLUMNS)
    params = ", ".join(f"${i}" for i in range(3, len(COUPON_COLUMNS) + 3))
    row = await conn.fetchrow(
        f"INSERT INTO coupons (id, organization_id, {names}) VALUES ($1, $2, {params}) RETURNING *",
        uuid.uuid4(),
        org,
        *(columns[name] for name in COUPON_COLUMNS),
    )
    assert row is not None
    return row


async def update_coupon(conn: Conn, coupon_id: uuid.UUID, columns: dict[str, Any]) -> Row:
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(COUPON_COLUMNS, start=2))
    row = await conn.fetchrow(
        f"UPDATE coupons SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",
        coupon_id,
        *(columns[name] for name in COUPON_COLUMNS),
    )
    assert row is not None
    return row


async def delete_coupon(conn: Conn, coupon_id: uuid.UUID) -> Row:
    """Soft-delete and terminate the coupon, and terminate its active applications."""
    await conn.execute(
        "UPDATE applied_coupons SET status = 'terminated', terminated_at = now(), "
        "updated_at = now() WHERE coupon_id = $1 AND status = 'active'",
        coupon_id,
    )
    row = await conn.fetchrow(
        "UPDATE coupons SET deleted_at = now(), status = 'terminated', "
        "terminated_at = coalesce(terminated_at, now()), updated_at = now() "
        "WHERE id = $1 RETURNING *",
        coupon_id,
    )
    assert row is not None
    return row


async def coupon_applied(conn: Conn, coupon_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM applied_coupons WHERE coupon_id = $1 LIMIT 1", coupon_id
    )
    return found is not None


async def list_coupons(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[Row], int]:
    total = await conn.fetchval(
        "SELECT count(*) FROM coupons WHERE organization_id = $1 AND deleted_at IS NULL", org
    )
    rows = await conn.fetch(
        "SELECT * FROM coupons WHERE organization_id = $1 AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        org,
        limit,
        offset,
    )
    return list(rows), int(total)


_APPLIED_COUPON = (
    "SELECT ac.*, c.code AS coupon_code, c.name AS coupon_name, c.expiration_at, "
    "c.status AS coupon_status, c.deleted_at AS coupon_deleted_at, "
    "cu.external_id AS external_customer_id "
    "FROM applied_coupons ac JOIN coupons c ON c.id = ac.coupon_id "
    "JOIN customers cu ON cu.id = ac.customer_id "
)


async def applied_coupon_by_id(conn: Conn, applied_coupon_id: uuid.UUID) -> Row | None:
    return await conn.fetchrow(_APPLIED_COUPON + "WHERE ac.id = $1", applied_coupon_id)


async def applications(conn: Conn, customer_id: uuid.UUID, coupon_id: uuid.UUID) -> int:
    """How many times the coupon was applied to the customer, ended applications included."""
    count = await conn.fetchval(
        "SELECT count(*) FROM applied_coupons WHERE customer_id = $1 AND coupon_id = $2",
        customer_id,
        coupon_id,
    )
    return int(count)


async def insert_applied_coupon(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    applied_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO applied_coupons (id, organization_id, coupon_id, customer_id, amount_cents, "
        "amount_currency, percentage_rate, frequency, frequency_duration, "
        "frequency_duration_remaining) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        applied_id,
        org,
        columns["coupon_id"],
        columns["customer_id"],
        columns["amount_cents"],
        columns["amount_currency"],
        columns["percentage_rate"],
        columns["frequency"],
        columns["frequency_duration"],
    )
    return applied_id


async def end_customer_credits(conn: Conn, customer_id: uuid.UUID) -> None:
    """Terminate the customer's applied coupons and wallets (its deletion, as in Lago)."""
    await conn.execute(
        "UPDATE applied_coupons SET status = 'terminated', terminated_at = now(), "
        "updated_at = now() WHERE customer_id = $1 AND status = 'active'",
        customer_id,
    )
    await conn.execute(
        "UPDATE wallets SET status = 'terminated', terminated_at = now(), updated_at = now() "
        "WHERE customer_id = $1 AND status = 'active'",
        customer_id,
    )


async def terminate_applied_coupon(conn: Conn, applied_coupon_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE applied_coupons SET status = 'terminated', terminated_at = now(), "
        "updated_at = now() WHERE id = $1 AND status = 'active'",
        applied_coupon_id,
    )


async def list_applied_coupons(
    conn: Conn,
    org: uuid.UUID,
    *,
    external_customer_id: str | None,
    status: str | None,
    coupon_codes: list[str] | None,
    limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    where = (
        "WHERE ac.organization_id = $1 AND ($2::text IS NULL OR cu.external_id = $2) "
        "AND cu.deleted_at IS NULL AND ($3::text IS NULL OR ac.status = $3) "
        "AND ($4::text[] IS NULL OR c.code = ANY($4::text[])) "
    )
    args = (org, external_customer_id, status, coupon_codes)
    total = await conn.fetchval(
        "SELECT count(*) FROM applied_coupons ac JOIN coupons c ON c.id = ac.coupon_id "
        "JOIN customers cu ON cu.id = ac.customer_id " + where,
        *args,
    )
    rows = await conn.fetch(
        _APPLIED_COUPON + where + "ORDER BY ac.created_at DESC, ac.id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


# --- wallets and wallet transactions ----------------------------------------------------

_WALLET = (
    "SELECT w.*, c.external_id AS external_customer_id FROM wallets w "
    "JOIN customers c ON c.id = w.customer_id "
)


async def wallet_by_id(
    conn: Conn, org: uuid.UUID, wallet_id: uuid.UUID, *, lock: bool = False
) -> Row | None:
    sql = _WALLET + "WHERE w.organization_id = $1 AND w.id = $2"
    return await conn.fetchrow(sql + (" FOR UPDATE OF w" if lock else ""), org, wallet_id)


async def wallet_by_code(
    conn: Conn, customer_id: uuid.UUID, code: str, *, lock: bool = False
) -> Row | None:
    """The customer's wallet with this code: the active one, else the latest."""
    sql = (
        _WALLET + "WHERE w.customer_id = $1 AND w.code = $2 "
        "ORDER BY (w.status = 'active') DESC, w.created_at DESC LIMIT 1"
    )
    return await conn.fetchrow(sql + (" FOR UPDATE OF w" if lock else ""), customer_id, code)


async def insert_wallet(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    wallet_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO wallets (id, organization_id, customer_id, name, code, currency, "
        "rate_amount, priority, expiration_at, attributes) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        wallet_id,
        org,
        columns["customer_id"],
        columns["name"],
        columns["code"],
        columns["currency"],
        columns["rate_amount"],
        columns["priority"],
        columns["expiration_at"],
        columns["attributes"],
    )
    return wallet_id


async def update_wallet(conn: Conn, wallet_id: uuid.UUID, columns: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE wallets SET name = $2, code = $3, priority = $4, expiration_at = $5, "
        "attributes = $6, updated_at = now() WHERE id = $1",
        wallet_id,
        columns["name"],
        columns["code"],
        columns["priority"],
        columns["expiration_at"],
        columns["attributes"],
    )


async def terminate_wallet(conn: Conn, wallet_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE wallets SET status = 'terminated', terminated_at = now(), updated_at = now() "
        "WHERE id = $1 AND status = 'active'",
        wallet_id,
    )


async def list_wallets(
    conn: Conn,
    org: uuid.UUID,
    *,
    external_customer_id: str | None,
    currency: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    where = (
        "WHERE w.organization_id = $1 AND ($2::text IS NULL OR c.external_id = $2) "
        "AND c.deleted_at IS NULL AND ($3::text IS NULL OR w.currency = $3) "
    )
    args = (org, external_customer_id, currency)
    total = await conn.fetchval(
        "SELECT count(*) FROM wallets w JOIN customers c ON c.id = w.customer_id " + where, *args
    )
    rows = await conn.fetch(
        _WALLET + where + "ORDER BY w.created_at DESC, w.id LIMIT $4 OFFSET $5",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


async def add_wallet_transaction(
    conn: Conn, wallet_id: uuid.UUID, columns: dict[str, Any]
) -> uuid.UUID:
    """Record a settled transaction and move the balance with it, in the caller's
    transaction: inbound adds (granted credits to the granted part too), outbound takes
    (from the granted part first, the order in which credits are consumed)."""
    amount = columns["amount_cents"]
    if columns["transaction_type"] == "inbound":
        granted = amount if columns["transaction_status"] == "granted" else 0
        await conn.execute(
            "UPDATE wallets SET balance_cents = balance_cents + $2, "
            "granted_balance_cents = granted_balance_cents + $3, updated_at = now() "
            "WHERE id = $1",
            wallet_id,
            amount,
            granted,
        )
    else:
        await conn.execute(
            "UPDATE wallets SET balance_cents = balance_cents - $2, "
            "granted_balance_cents = granted_balance_cents - least(granted_balance_cents, $2), "
            "updated_at = now() WHERE id = $1",
            wallet_id,
            amount,
        )
    transaction_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO wallet_transactions (id, wallet_id, status, source, transaction_status, "
        "transaction_type, amount_cents, name, metadata, settled_at) "
        "VALUES ($1, $2, 'settled', 'manual', $3, $4, $5, $6, $7, now())",
        transaction_id,
        wallet_id,
        columns["transaction_status"],
        columns["transaction_type"],
        columns["amount_cents"],
        columns["name"],
        columns["metadata"],
    )
    return transaction_id


_WALLET_TRANSACTION = (
    "SELECT t.*, w.rate_amount, w.currency, w.priority, w.organization_id "
    "FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id "
)


async def wallet_transactions_by_ids(conn: Conn, ids: list[uuid.UUID]) -> list[Row]:
    # In the order given: transactions made together share created_at (one transaction).
    rows = await conn.fetch(
        _WALLET_TRANSACTION
        + "WHERE t.id = ANY($1::uuid[]) ORDER BY array_position($1::uuid[], t.id)",
        ids,
    )
    return list(rows)


async def wallet_transaction(conn: Conn, org: uuid.UUID, transaction_id: uuid.UUID) -> Row | None:
    return await conn.fetchrow(
        _WALLET_TRANSACTION + "WHERE w.organization_id = $1 AND t.id = $2", org, transaction_id
    )


async def list_wallet_transactions(
    conn: Conn, wallet_id: uuid.UUID, filters: dict[str, str | None], limit: int, offset: int
) -> tuple[list[Row], int]:
    where = (
        "WHERE t.wallet_id = $1 AND ($2::text IS NULL OR t.status = $2) "
        "AND ($3::text IS NULL OR t.transaction_status = $3) "
        "AND ($4::text IS NULL OR t.transaction_type = $4) "
    )
    args = (
        wallet_id,
        filters["status"],
        filters["transaction_status"],
        filters["transaction_type"],
    )
    total = await conn.fetchval("SELECT count(*) FROM wallet_transactions t " + where, *args)
    rows = await conn.fetch(
        _WALLET_TRANSACTION + where + "ORDER BY t.created_at DESC, t.id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


# --- the organization's own settings ----------------------------------------------------


async def organization_row(conn: Conn, org: uuid.UUID, *, lock: bool = False) -> Row:
    sql = "SELECT * FROM organizations WHERE id = $1"
    # NO KEY UPDATE: a plain FOR UPDATE also blocks the foreign-key checks (KEY SHARE) of
    # every insert naming the organization, and an organization update that then waits for
    # a customer row deadlocked with a customer change that was inserting (found by
    # schemathesis: PUT /organizations answered 500).
    row = await conn.fetchrow(sql + (" FOR NO KEY UPDATE" if lock else ""), org)
    assert row is not None
    return row


async def update_organization(
    conn: Conn, org: uuid.UUID, timezone: str, attributes: dict[str, Any]
) -> Row:
    row = await conn.fetchrow(
        "UPDATE organizations SET timezone = $2, attributes = $3, version = version + 1 "
        "WHERE id = $1 RETURNING *",
        org,
        timezone,
        attributes,
    )
    assert row is not None
    return row


async def bump_customers_on_organization_timezone(conn: Conn, org: uuid.UUID) -> list[uuid.UUID]:
    """New versions of the customers without a timezone of their own (their applicable
    timezone is the organization's); returns their ids."""
    rows = await conn.fetch(
        "UPDATE customers SET version = version + 1, updated_at = now() "
        "WHERE organization_id = $1 AND timezone IS NULL AND deleted_at IS NULL RETURNING id",
        org,
    )
    return [r["id"] for r in rows]


async def live_subscription_ids_on_organization_timezone(
    conn: Conn, org: uuid.UUID
) -> list[uuid.UUID]:
    """Live subscriptions whose customer has no timezone of its own."""
    rows = await conn.fetch(
        "SELECT s.id FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
        "WHERE s.organization_id = $1 AND s.status IN ('active', 'pending') "
        "AND c.timezone IS NULL",
        org,
    )
    return [r["id"] for r in rows]
