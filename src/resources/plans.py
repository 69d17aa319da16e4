"""`/api/v1/plans`: a price per interval plus usage charges, each charge a charge model
(`billing.charge_models`) applied to one billable metric."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import asyncpg
from aiohttp import web

from billing.charge_models import CHARGE_MODELS
from billing.errors import InvalidChargeProperties
from billing.periods import PlanInterval
from meterflow import db
from meterflow.db import Conn
from resources import billable_metrics, charges, database, records, subscriptions, taxes
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
_CHARGE = {
    "id",
    "billable_metric_id",
    "code",
    "charge_model",
    "pay_in_advance",
    "invoiceable",
    "regroup_paid_fees",
    "invoice_display_name",
    "prorated",
    "min_amount_cents",
    "properties",
    "filters",
    "tax_codes",
    "applied_pricing_unit",
    "accepts_target_wallet",
    "cascade_updates",
}
_CHARGE_FILTER = {"invoice_display_name", "properties", "values"}


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _properties(fields: Fields, model: str | None, raw: dict[str, Any], where: str) -> None:
    if model is None:
        return
    try:
        CHARGE_MODELS[model].validate(raw)
    except InvalidChargeProperties as exc:
        for key, codes in exc.details.items():
            for code in codes:
                fields.add(f"{where}.{key}", code)


def _filters(
    fields: Fields, model: str | None, raw: list[Any], metric: asyncpg.Record | None, i: int
) -> list[dict[str, Any]]:
    allowed = {f["key"]: set(f["values"]) for f in metric["filters"]} if metric else {}
    out = []
    for j, item in enumerate(raw):
        where = f"charges.{i}.filters.{j}"
        if not isinstance(item, dict):
            fields.add(where, INVALID)
            continue
        f = Fields(item, _CHARGE_FILTER, prefix=f"{where}.")
        name = f.text("invoice_display_name")
        properties = f.mapping("properties", required=True) or {}
        values = f.mapping("values", required=True) or {}
        fields.merge(f.errors)
        _properties(fields, model, properties, f"{where}.properties")
        for key, chosen in values.items():
            ok_values = (
                isinstance(chosen, list) and chosen and all(isinstance(v, str) for v in chosen)
            )
            if metric is not None and key not in allowed:
                fields.add(f"{where}.values.{key}", "filter_key_not_found")
            elif not ok_values or (
                metric is not None
                and not all(v in allowed[key] or v == "__ALL_FILTER_VALUES__" for v in chosen)
            ):
                fields.add(f"{where}.values.{key}", INVALID)
        out.append({"invoice_display_name": name, "properties": properties, "values": values})
    return out


async def _charges(
    conn: Conn,
    org: uuid.UUID,
    fields: Fields,
    raw: list[Any],
    existing_ids: set[uuid.UUID],
) -> list[dict[str, Any]]:
    """Validate each charge input against its charge model and its billable metric."""
    metric_ids = [_uuid(c.get("billable_metric_id")) if isinstance(c, dict) else None for c in raw]
    metrics = await billable_metrics.billable_metrics_by_ids(
        conn, org, [m for m in metric_ids if m is not None]
    )
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            fields.add(f"charges.{i}", INVALID)
            continue
        c = Fields(item, _CHARGE, prefix=f"charges.{i}.")
        charge_id = _uuid(c.text("id", max_length=64))
        if c.has("id") and (charge_id is None or charge_id not in existing_ids):
            c.add("id", "charge_not_found")
        metric_ref = c.text("billable_metric_id", required=True, max_length=64)
        metric_id = metric_ids[i]
        metric = metrics.get(metric_id) if metric_id is not None else None
        if metric_ref is not None and metric is None:
            raise NotFound("billable_metric")
        model = c.text("charge_model", required=True, choices=tuple(CHARGE_MODELS))
        properties = c.mapping("properties") or {}
        pay_in_advance = bool(c.flag("pay_in_advance"))
        invoiceable = c.flag("invoiceable")
        prorated = bool(c.flag("prorated"))
        min_amount_cents = c.integer("min_amount_cents", minimum=0) or 0
        attributes = {
            "code": c.text("code"),
            "invoice_display_name": c.text("invoice_display_name"),
            "regroup_paid_fees": c.text("regroup_paid_fees", choices=("invoice",)),
        }
        tax_codes = c.strings("tax_codes")
        tax_ids = None
        if tax_codes is not None:
            found = await taxes.taxes_by_codes(conn, org, sorted(set(tax_codes)))
            if len(found) != len(set(tax_codes)):
                raise NotFound("tax")  # as Lago answers an unknown tax code
            tax_ids = [t["id"] for t in found]
        if c.mapping("applied_pricing_unit"):
            c.add("applied_pricing_unit", "not_supported")
        c.flag("accepts_target_wallet")
        raw_filters = c.array("filters") or []
        fields.merge(c.errors)
        _properties(fields, model, properties, f"charges.{i}.properties")
        filters = _filters(fields, model, raw_filters, metric, i)
        out.append(
            {
                "id": charge_id if charge_id in existing_ids else None,
                "billable_metric_id": metric["id"] if metric else None,
                "charge_model": model,
                "pay_in_advance": pay_in_advance,
                "invoiceable": True if invoiceable is None else invoiceable,
                "prorated": prorated,
                "min_amount_cents": min_amount_cents,
                "properties": properties,
                "filters": filters,
                "attributes": attributes,
                "tax_ids": tax_ids,
            }
        )
    return out


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
        new_charges = await _charges(conn, org.id, fields, raw_charges, set())
        fields.check()
        await database.claim_name(conn, org.id, "plan", plan["code"])
        if await plan_by_code(conn, org.id, plan["code"]) is not None:
            raise ValidationFailed({"code": ["value_already_exist"]})
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
        row = await plan_by_code(conn, org.id, request.match_info["code"], lock=True)
        if row is None:
            raise NotFound("plan")
        known = await taxes.known_tax_codes(conn, org.id, fields.raw.get("tax_codes"))
        check_tax_codes(fields.raw.get("tax_codes"), known)
        plan = _plan_fields(fields, _current(row), known)
        new_charges = None
        if raw_charges is not None:
            existing = await charges.charge_ids_of(conn, row["id"])
            new_charges = await _charges(conn, org.id, fields, raw_charges, existing)
        fields.check()
        code_changed = plan["code"] != row["code"]
        if code_changed:
            await database.claim_name(conn, org.id, "plan", plan["code"])
        if code_changed and await plan_by_code(conn, org.id, plan["code"]) is not None:
            raise ValidationFailed({"code": ["value_already_exist"]})
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
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await plan_by_code(conn, org.id, request.match_info["code"], lock=True)
        if row is None:
            raise NotFound("plan")
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


async def list_plans(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
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


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/plans", create),
        web.get("/api/v1/plans", find_all),
        web.get("/api/v1/plans/{code}", find),
        web.put("/api/v1/plans/{code}", update),
        web.delete("/api/v1/plans/{code}", destroy),
    ]
