"""Plans' rules and SQL: a price per interval plus usage charges, each charge a charge model
(`billing.charge_models`) applied to one billable metric."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import asyncpg

from billing.periods import PlanInterval
from meterflow.db import Conn
from store import database, taxes
from store.taxes import tax_body
from web.payload import (
    INVALID,
    Fields,
    currency,
)

INTERVALS = tuple(PlanInterval)


PLAN_FIELDS = {
    "name",
    "invoice_display_name",
    "code",
    "interval",
    "description",
    "amount_cents",
    "amount_currency",
    "trial_period",
    "pay_in_advance",
    "bill_charges_monthly",
    "bill_fixed_charges_monthly",
    "tax_codes",
    "minimum_commitment",
    "charges",
    "fixed_charges",
    "usage_thresholds",
    "metadata",
    "cascade_updates",
}


def plan_fields(
    fields: Fields, current: dict[str, Any] | None, known_tax_codes: Collection[str] = ()
) -> dict[str, Any]:
    """The plan after this input; `tax_codes`, when sent, must name the organization's
    taxes (`known_tax_codes`) and come back as the merged plan's `tax_codes`."""
    creating = current is None
    given: dict[str, Any] = {
        "name": fields.text("name", required=creating),
        "code": fields.text("code", required=creating),
        "interval": fields.text("interval", required=creating, choices=INTERVALS),
        "amount_cents": fields.integer("amount_cents", required=creating, minimum=0),
        "amount_currency": currency(fields, "amount_currency", required=creating),
        "pay_in_advance": fields.flag("pay_in_advance"),
        "invoice_display_name": fields.text("invoice_display_name"),
        "description": fields.text("description", max_length=10_000),
        "bill_charges_monthly": fields.flag("bill_charges_monthly"),
        "bill_fixed_charges_monthly": fields.flag("bill_fixed_charges_monthly"),
        "metadata": fields.mapping("metadata"),
    }
    if fields.number("trial_period", minimum=0):
        fields.add("trial_period", "not_supported")  # trials are not modelled yet
    tax_codes = fields.strings("tax_codes")
    if tax_codes is not None and any(code not in known_tax_codes for code in tax_codes):
        fields.add("tax_codes", "tax_not_found")
    for unsupported in ("minimum_commitment",):
        if fields.mapping(unsupported):
            fields.add(unsupported, "not_supported")
    for unsupported in ("fixed_charges", "usage_thresholds"):
        if fields.array(unsupported):
            fields.add(unsupported, "not_supported")
    fields.flag("cascade_updates")
    metadata = given["metadata"]
    if metadata is not None and not all(
        isinstance(v, str | None) and len(k) <= 255 for k, v in metadata.items()
    ):
        fields.add("metadata", INVALID)
    merged = dict(current or {})
    merged.update({k: v for k, v in given.items() if fields.has(k)})
    if tax_codes is not None:
        merged["tax_codes"] = sorted(set(tax_codes))
    if merged.get("bill_charges_monthly") and merged.get("interval") not in (
        "yearly",
        "semiannual",
    ):
        fields.add("bill_charges_monthly", INVALID)
    return merged


def plan_columns(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": plan["code"],
        "name": plan["name"],
        "interval": plan["interval"],
        "amount_cents": plan["amount_cents"],
        "amount_currency": plan["amount_currency"],
        "pay_in_advance": bool(plan.get("pay_in_advance")),
        "attributes": {
            k: plan.get(k)
            for k in (
                "invoice_display_name",
                "description",
                "bill_charges_monthly",
                "bill_fixed_charges_monthly",
                "metadata",
            )
        },
    }


def current_plan(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "code": row["code"],
        "name": row["name"],
        "interval": row["interval"],
        "amount_cents": row["amount_cents"],
        "amount_currency": row["amount_currency"],
        "pay_in_advance": row["pay_in_advance"],
        **row["attributes"],
    }


async def set_taxes(
    conn: Conn, org: uuid.UUID, plan_id: uuid.UUID, codes: list[str] | None
) -> None:
    if codes is not None:
        found = await taxes.taxes_by_codes(conn, org, codes)
        await taxes.replace_taxes_of(conn, "plan", plan_id, [t["id"] for t in found])


async def with_taxes(conn: Conn, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plans' bodies with their taxes and their charges' (`taxes`), as Lago shows them."""
    plan_taxes = await taxes.taxes_of(conn, "plan", [uuid.UUID(b["lago_id"]) for b in bodies])
    charge_bodies = [charge for body in bodies for charge in body["charges"]]
    charge_taxes = await taxes.taxes_of(
        conn, "charge", [uuid.UUID(c["lago_id"]) for c in charge_bodies]
    )
    for body in bodies:
        body["taxes"] = [tax_body(t) for t in plan_taxes[uuid.UUID(body["lago_id"])]]
    for charge in charge_bodies:
        charge["taxes"] = [tax_body(t) for t in charge_taxes[uuid.UUID(charge["lago_id"])]]
    return bodies


async def plan_by_code(
    conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = "SELECT * FROM plans WHERE organization_id = $1 AND code = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


async def plan_by_id(conn: Conn, plan_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM plans WHERE id = $1", plan_id)
    assert row is not None
    return row


_COLUMNS = (
    "code",
    "name",
    "interval",
    "amount_cents",
    "amount_currency",
    "pay_in_advance",
    "attributes",
)


async def insert_plan(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    plan_id = uuid.uuid4()
    sql = database.insert_row("plans", _COLUMNS)
    await conn.execute(sql, plan_id, org, *database.values(columns, _COLUMNS))
    return plan_id


async def update_plan(conn: Conn, plan_id: uuid.UUID, columns: dict[str, Any]) -> None:
    sql = database.update_row("plans", _COLUMNS, versioned=True)
    await conn.execute(sql, plan_id, *database.values(columns, _COLUMNS))


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


async def list_plans(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    return await database.organization_page(conn, "plans", org, limit, offset, live=True)
