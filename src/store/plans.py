"""Plans' rules and SQL: a price per interval plus usage charges, each charge a charge model
(`billing.charge_models`) applied to one billable metric."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

import asyncpg

from billing.periods import PlanInterval
from meterflow.db import Conn
from store import charges, code_keyed, database, records, subscriptions, taxes
from store.taxes import check_tax_codes, tax_body
from web.errors import ValidationFailed
from web.payload import INVALID, Fields, currency

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
    columns = database.payload_columns(plan, _COLUMNS, _ATTRIBUTES)
    return {**columns, "pay_in_advance": bool(columns["pay_in_advance"])}


_ATTRIBUTES = (
    "invoice_display_name",
    "description",
    "bill_charges_monthly",
    "bill_fixed_charges_monthly",
    "metadata",
)


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


plan_by_code = database.code_lookup("plans", live=True)


plan_by_id = database.id_lookup("plans")


_COLUMNS = (
    "code",
    "name",
    "interval",
    "amount_cents",
    "amount_currency",
    "pay_in_advance",
    "attributes",
)


async def bump_plan(conn: Conn, plan_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE plans SET version = version + 1, updated_at = now() WHERE id = $1", plan_id
    )


async def plan_in_use(conn: Conn, plan_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM subscriptions WHERE plan_id = $1 AND status IN ('active', 'pending') "
        "LIMIT 1",
        plan_id,
    )
    return found is not None


async def _parse(
    conn: Conn, org: uuid.UUID, raw: dict[str, Any], current: asyncpg.Record | None
) -> dict[str, Any]:
    """The plan's columns, its `charges` (None: an update keeps them) and `tax_codes`. When
    `charges` is given it becomes the plan's full charge list (a charge keeps its lago_id
    when its `id` is sent back)."""
    fields = Fields(raw, PLAN_FIELDS)
    raw_charges = fields.array("charges")
    known = await taxes.known_tax_codes(conn, org, fields.raw.get("tax_codes"))
    check_tax_codes(fields.raw.get("tax_codes"), known)
    plan = plan_fields(fields, database.stored_payload(current, _COLUMNS), known)
    new_charges = None
    if current is None or raw_charges is not None:
        existing = set() if current is None else await charges.charge_ids_of(conn, current["id"])
        new_charges = await charges.parse_charges(conn, org, fields, raw_charges or [], existing)
    fields.check()
    return {**plan_columns(plan), "charges": new_charges, "tax_codes": plan.get("tax_codes")}


async def _attach(
    conn: Conn, org: uuid.UUID, row: asyncpg.Record, columns: Mapping[str, Any]
) -> None:
    if columns["charges"] is not None:
        await charges.replace_charges(conn, row["id"], columns["charges"])
    await set_taxes(conn, org, row["id"], columns["tax_codes"])


async def _changed(conn: Conn, before: asyncpg.Record | None, after: asyncpg.Record) -> None:
    await records.enqueue_plan(conn, after["id"])
    if before is None:
        return
    # Subscriptions carry their plan's code, amount and interval: republish them.
    for subscription_id in await subscriptions.live_subscription_ids_of_plan(conn, after["id"]):
        await subscriptions.bump_subscription(conn, subscription_id)
        await records.enqueue_subscription(conn, subscription_id)


async def _delete(conn: Conn, current: asyncpg.Record) -> asyncpg.Record:
    """Delete a plan no live subscription uses (Lago terminates them; meterflow asks the
    caller to terminate them first, so no usage is dropped by surprise)."""
    if await plan_in_use(conn, current["id"]):
        raise ValidationFailed({"plan": ["attached_to_live_subscriptions"]})
    await database.soft_delete(conn, "plans", current["id"], versioned=True)
    await records.enqueue_plan(conn, current["id"])
    return current


async def _render(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return await with_taxes(conn, await records.plan_bodies(conn, rows))


PLANS = code_keyed.CodeKeyed(
    "plan",
    "plans",
    plan_by_code,
    _parse,
    _COLUMNS,
    _delete,
    _render,
    attach=_attach,
    changed=_changed,
)
list_plans = PLANS.listing
