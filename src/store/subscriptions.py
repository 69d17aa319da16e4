"""Subscriptions' rules and SQL: create, read, list, update and terminate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from billing.periods import BillingTime
from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model.subscriptions import SELECT_SUBSCRIPTION, subscription_body, subscription_by_id
from store import customers, database, plans, records
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields

BILLING_TIMES = tuple(BillingTime)


STATUSES = ("active", "pending", "canceled", "terminated")


_CREATE = {
    "external_customer_id",
    "plan_code",
    "external_id",
    "name",
    "billing_time",
    "subscription_at",
    "ending_at",
    "plan_overrides",
    "billing_entity_code",
    "payment_method",
    "invoice_custom_section",
    "consolidate_invoice",
    "purchase_order_number",
    "activation_rules",
}


# billing_entity_code, payment_method, invoice_custom_section, consolidate_invoice and
# purchase_order_number are accepted for compatibility with Lago's clients and not used yet.
UPDATE_FIELDS = {
    "name",
    "ending_at",
    "subscription_at",
    "plan_overrides",
    "payment_method",
    "invoice_custom_section",
    "purchase_order_number",
    "consolidate_invoice",
}


def refuse_unsupported(fields: Fields) -> None:
    if fields.mapping("plan_overrides"):
        fields.add("plan_overrides", "not_supported")
    if fields.array("activation_rules"):
        fields.add("activation_rules", "not_supported")


async def terminate(conn: Conn, subscription_id: uuid.UUID) -> dict[str, Any]:
    """End a subscription now: an active one is terminated, a pending one canceled."""
    row = await subscription_by_id(conn, subscription_id)
    now = datetime.now(UTC)
    if row["status"] == "pending":
        await update_subscription(conn, subscription_id, {"status": "canceled", "canceled_at": now})
    elif row["status"] == "active":
        await update_subscription(
            conn, subscription_id, {"status": "terminated", "terminated_at": now}
        )
    body = await records.enqueue_subscription(conn, subscription_id)
    if row["status"] == "active":
        await webhook_outbox.emit(
            conn, row["organization_id"], "subscription.terminated", subscription_id, body
        )
    return body


def parse_update(raw: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    """The changes an update asks for (name, ending_at) and its new `subscription_at`, if
    any; raises ValidationFailed naming every bad field."""
    fields = Fields(raw, UPDATE_FIELDS)
    changes: dict[str, Any] = {}
    if fields.has("name"):
        changes["name"] = fields.text("name")
    if fields.has("ending_at"):
        changes["ending_at"] = fields.instant("ending_at")
    subscription_at = fields.instant("subscription_at")
    refuse_unsupported(fields)
    fields.check()
    return changes, subscription_at


async def change_subscription(
    conn: Conn,
    org: uuid.UUID,
    external_id: str,
    status: str | None,
    changes: dict[str, Any],
    subscription_at: datetime | None,
) -> dict[str, Any]:
    """Apply `parse_update`'s changes; a pending subscription may get a new start (reached
    already: it starts now, announced by `subscription.started`)."""
    row = await subscription_by_external_id(conn, org, external_id, status=status)
    if row is None:
        raise NotFound("subscription")
    if subscription_at is not None:
        if row["status"] != "pending":
            raise ValidationFailed({"subscription_at": ["cannot_change_started_subscription"]})
        changes = {**changes, "subscription_at": subscription_at}
        if subscription_at <= datetime.now(UTC):
            changes.update(status="active", started_at=subscription_at)
    if not changes:
        return subscription_body(row)
    await update_subscription(conn, row["id"], changes)
    body = await records.enqueue_subscription(conn, row["id"])
    if changes.get("status") == "active":
        await webhook_outbox.emit(conn, org, "subscription.started", row["id"], body)
    return body


async def terminate_now(
    conn: Conn, org: uuid.UUID, external_id: str, status: str | None
) -> dict[str, Any]:
    """Terminate now (Lago's DELETE): the subscription stays readable with its end time."""
    row = await subscription_by_external_id(conn, org, external_id, status=status)
    if row is None or row["status"] not in ("active", "pending"):
        raise NotFound("subscription")
    return await terminate(conn, row["id"])


async def create_subscription(
    ctx: IngestContext, org: Organization, raw: dict[str, Any]
) -> dict[str, Any]:
    """Subscribe a customer to a plan from Lago's input object; returns the API body (the
    live one unchanged when the same subscription is created again)."""
    fields = Fields(raw, _CREATE)
    external_customer_id = fields.text("external_customer_id", required=True)
    plan_code = fields.text("plan_code", required=True)
    external_id = fields.text("external_id", required=True)
    name = fields.text("name")
    billing_time = fields.text("billing_time", choices=BILLING_TIMES) or "calendar"
    subscription_at = fields.instant("subscription_at")
    ending_at = fields.instant("ending_at")
    refuse_unsupported(fields)
    now = datetime.now(UTC)
    start = subscription_at or now
    if ending_at is not None and ending_at <= start:
        fields.add("ending_at", "invalid_date")
    fields.check()
    assert external_customer_id and plan_code and external_id
    async with db.unit_of_work(ctx.db) as conn:
        plan = await plans.plan_by_code(conn, org.id, plan_code)
        if plan is None:
            raise NotFound("plan")
        await database.claim_name(conn, org.id, "customer", external_customer_id)
        await database.claim_name(conn, org.id, "subscription", external_id)
        customer = await customers.customer_by_external_id(
            conn, org.id, external_customer_id, lock=True
        )
        if customer is None:
            # As in Lago, subscribing an unknown customer creates it.
            customer_id = await customers.insert_customer(
                conn,
                org.id,
                external_customer_id,
                {"name": None, "email": None, "currency": None, "timezone": None, "attributes": {}},
            )
            created = await records.enqueue_customer(conn, customer_id)
            await webhook_outbox.emit(conn, org.id, "customer.created", customer_id, created)
        else:
            customer_id = customer["id"]
        existing = await subscription_by_external_id(conn, org.id, external_id)
        if existing is not None and existing["status"] in ("active", "pending"):
            if existing["plan_id"] == plan["id"] and existing["customer_id"] == customer_id:
                return subscription_body(existing)
            raise ValidationFailed({"external_id": ["value_already_exist"]})
        pending = start > now
        subscription_id = await insert_subscription(
            conn,
            org.id,
            {
                "external_id": external_id,
                "customer_id": customer_id,
                "plan_id": plan["id"],
                "name": name,
                "billing_time": billing_time,
                "subscription_at": start,
                "started_at": None if pending else start,
                "ending_at": ending_at,
                "status": "pending" if pending else "active",
            },
        )
        body = await records.enqueue_subscription(conn, subscription_id)
        if not pending:
            await webhook_outbox.emit(conn, org.id, "subscription.started", subscription_id, body)
    await ctx.catalog.drain_quietly()
    return body


async def subscription_by_external_id(
    conn: Conn, org: uuid.UUID, external_id: str, *, status: str | None = None
) -> asyncpg.Record | None:
    """The live subscription with this external id, else (or with `status`) the latest one."""
    if status is not None:
        return await conn.fetchrow(
            SELECT_SUBSCRIPTION + "WHERE s.organization_id = $1 AND s.external_id = $2 "
            "AND s.status = $3 ORDER BY s.created_at DESC LIMIT 1",
            org,
            external_id,
            status,
        )
    return await conn.fetchrow(
        SELECT_SUBSCRIPTION + "WHERE s.organization_id = $1 AND s.external_id = $2 "
        "ORDER BY (s.status IN ('active', 'pending')) DESC, s.created_at DESC LIMIT 1",
        org,
        external_id,
    )


# What the current-usage routes look up before asking the aggregator, in one query: whether
# the customer is there, and whose the subscription is (the live one, else the latest, as
# `subscription_by_external_id` finds it).
_USAGE_OWNER = """
SELECT EXISTS (SELECT FROM customers WHERE organization_id = $1 AND external_id = $2
        AND deleted_at IS NULL) AS customer_found,
    (SELECT c.external_id FROM subscriptions s JOIN customers c ON c.id = s.customer_id
     WHERE s.organization_id = $1 AND s.external_id = $3
     ORDER BY (s.status IN ('active', 'pending')) DESC, s.created_at DESC LIMIT 1) AS owner
"""


async def missing_for_usage(
    conn: Conn, org: uuid.UUID, external_customer_id: str, external_subscription_id: str
) -> str | None:
    """None when the customer is there and the subscription is the customer's; else what is
    not found: "customer", or "subscription" (none with that id, or another customer's)."""
    row = await db.existing_row(
        conn, _USAGE_OWNER, org, external_customer_id, external_subscription_id
    )
    if not row["customer_found"]:
        return "customer"
    return None if row["owner"] == external_customer_id else "subscription"


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


_INSERTED = (
    "external_id",
    "customer_id",
    "plan_id",
    "name",
    "billing_time",
    "subscription_at",
    "started_at",
    "ending_at",
    "status",
)


async def insert_subscription(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    return await database.insert_new(conn, "subscriptions", org, _INSERTED, columns)


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


SUBSCRIPTIONS = database.Listing(
    SELECT_SUBSCRIPTION,
    "s.organization_id = {}",
    {
        "external_customer_id": "c.external_id = {}",
        "plan_code": "p.code = {}",
        "statuses": "s.status = ANY({}::text[])",
    },
    "s.created_at DESC, s.id",
)

list_subscriptions = database.pager(SUBSCRIPTIONS, database.each(subscription_body))
