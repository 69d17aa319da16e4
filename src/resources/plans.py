"""`/api/v1/plans`: a price per interval plus usage charges, each charge a charge model
(`billing.charge_models`) applied to one billable metric."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import asyncpg
from aiohttp import web

from billing.periods import PlanInterval
from meterflow import db
from meterflow.db import Conn
from resources import charges, crud, database, records, subscriptions, taxes
from resources.taxes import check_tax_codes, tax_body
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import (
    INVALID,
    Fields,
    currency,
    ok,
    page_params,
    pagination_meta,
    read_wrapped,
)

INTERVALS = tuple(PlanInterval)
_PLAN = {
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


def _plan_fields(
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


def _columns(plan: dict[str, Any]) -> dict[str, Any]:
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


def _current(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "code": row["code"],
        "name": row["name"],
        "interval": row["interval"],
        "amount_cents": row["amount_cents"],
        "amount_currency": row["amount_currency"],
        "pay_in_advance": row["pay_in_advance"],
        **row["attributes"],
    }


async def _set_taxes(
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


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "plan"), _PLAN)
    raw_charges = fields.array("charges") or []
    async with db.unit_of_work(ctx.db) as conn:
        known = await taxes.known_tax_codes(conn, org.id, fields.raw.get("tax_codes"))
        check_tax_codes(fields.raw.get("tax_codes"), known)
        plan = _plan_fields(fields, None, known)
        new_charges = await charges.parse_charges(conn, org.id, fields, raw_charges, set())
        fields.check()
        await crud.claim_code(conn, org.id, "plan", plan["code"], plan_by_code)
        plan_id = await insert_plan(conn, org.id, _columns(plan))
        await charges.replace_charges(conn, plan_id, new_charges)
        await _set_taxes(conn, org.id, plan_id, plan.get("tax_codes"))
        body = (await with_taxes(conn, [await records.enqueue_plan(conn, plan_id)]))[0]
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


async def update(request: web.Request) -> web.Response:
    """Change the plan; when `charges` is given it becomes the plan's full charge list
    (a charge keeps its lago_id when its `id` is sent back)."""
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "plan"), _PLAN)
    raw_charges = fields.array("charges")
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "plan", plan_by_code)
        known = await taxes.known_tax_codes(conn, org.id, fields.raw.get("tax_codes"))
        check_tax_codes(fields.raw.get("tax_codes"), known)
        plan = _plan_fields(fields, _current(row), known)
        new_charges = None
        if raw_charges is not None:
            existing = await charges.charge_ids_of(conn, row["id"])
            new_charges = await charges.parse_charges(conn, org.id, fields, raw_charges, existing)
        fields.check()
        code_changed = plan["code"] != row["code"]
        if code_changed:
            await crud.claim_code(conn, org.id, "plan", plan["code"], plan_by_code)
        await update_plan(conn, row["id"], _columns(plan))
        if new_charges is not None:
            await charges.replace_charges(conn, row["id"], new_charges)
        await _set_taxes(conn, org.id, row["id"], plan.get("tax_codes"))
        body = (await with_taxes(conn, [await records.enqueue_plan(conn, row["id"])]))[0]
        # Subscriptions carry their plan's code, amount and interval: republish them.
        for subscription_id in await subscriptions.live_subscription_ids_of_plan(conn, row["id"]):
            await subscriptions.bump_subscription(conn, subscription_id)
            await records.enqueue_subscription(conn, subscription_id)
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await plan_by_code(conn, org.id, request.match_info["code"])
        if row is None:
            raise NotFound("plan")
        body = (await with_taxes(conn, await records.plan_bodies(conn, [row])))[0]
    return ok({"plan": body})


async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        rows, total = await list_plans(conn, org.id, per_page, (page - 1) * per_page)
        bodies = await with_taxes(conn, await records.plan_bodies(conn, rows))
    return ok({"plans": bodies, "meta": pagination_meta(page, per_page, total)})


async def destroy(request: web.Request) -> web.Response:
    """Delete a plan no live subscription uses (Lago terminates them; meterflow asks the
    caller to terminate them first, so no usage is dropped by surprise)."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "plan", plan_by_code)
        if await plan_in_use(conn, row["id"]):
            raise ValidationFailed({"plan": ["attached_to_live_subscriptions"]})
        body = (await with_taxes(conn, await records.plan_bodies(conn, [row])))[0]
        await delete_plan(conn, row["id"])
        await records.enqueue_plan(conn, row["id"])
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


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


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/plans", create),
        web.get("/api/v1/plans", find_all),
        web.get("/api/v1/plans/{code}", find),
        web.put("/api/v1/plans/{code}", update),
        web.delete("/api/v1/plans/{code}", destroy),
    ]
