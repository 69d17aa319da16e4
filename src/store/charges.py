"""The charges of a plan: their payload rules and their SQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from billing.charge_models import CHARGE_MODELS
from billing.errors import InvalidChargeProperties
from meterflow.db import Conn
from store import billable_metrics, taxes
from web.errors import NotFound
from web.payload import INVALID, Fields


async def charges_of(
    conn: Conn, plan_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Each plan's charges in order, with their billable metric's code."""
    rows = await conn.fetch(
        "SELECT ch.*, bm.code AS billable_metric_code FROM charges ch "
        "JOIN billable_metrics bm ON bm.id = ch.billable_metric_id "
        "WHERE ch.plan_id = ANY($1::uuid[]) ORDER BY ch.plan_id, ch.position",
        plan_ids,
    )
    out: dict[uuid.UUID, list[asyncpg.Record]] = {p: [] for p in plan_ids}
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
    for j, _, f in fields.each(f"charges.{i}.filters", raw, _CHARGE_FILTER):
        where = f"charges.{i}.filters.{j}"
        name = f.text("invoice_display_name")
        properties = f.mapping("properties", required=True) or {}
        values = f.mapping("values", required=True) or {}
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


async def parse_charges(
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
    for i, _, c in fields.each("charges", raw, _CHARGE):
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
