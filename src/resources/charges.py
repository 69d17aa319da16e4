"""The charges of a plan: their payload rules and their SQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn


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
