"""Billable metrics' rules and SQL: what to count in events, and how (Lago's aggregations)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from billing.aggregations import AGGREGATIONS
from meterflow.db import Conn
from store import code_keyed, database, plans, records
from web.payload import INVALID, Fields

_ALLOWED = {
    "name",
    "code",
    "description",
    "recurring",
    "expression",
    "rounding_function",
    "rounding_precision",
    "field_name",
    "aggregation_type",
    "weighted_interval",
    "filters",
}


# count_agg counts events; every other aggregation reads a number or value from this field.
_WITHOUT_FIELD = frozenset({"count_agg"})


_FILTER = {"key", "values"}


def _filters(fields: Fields) -> list[dict[str, Any]] | None:
    raw = fields.array("filters")
    if raw is None:
        return None
    out: list[dict[str, Any]] = []
    for i, _, f in fields.each("filters", raw, _FILTER):
        key = f.text("key", required=True)
        values = f.strings("values")
        if not values:
            f.add("values", "value_is_mandatory")
        if key is not None and values:
            if any(existing["key"] == key for existing in out):
                fields.add(f"filters.{i}.key", "value_already_exist")
            out.append({"key": key, "values": list(dict.fromkeys(values))})
    return out


def parse_metric(raw: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metric's columns from an input (over `current`'s on update); raises
    ValidationFailed naming every bad field."""
    fields = Fields(raw, _ALLOWED)
    creating = current is None
    given: dict[str, Any] = {
        "name": fields.text("name", required=creating),
        "code": fields.text("code", required=creating),
        "aggregation_type": fields.text(
            "aggregation_type", required=creating, choices=tuple(AGGREGATIONS)
        ),
        "field_name": fields.text("field_name"),
        "recurring": fields.flag("recurring"),
        "filters": _filters(fields),
        "description": fields.text("description", max_length=10_000),
        "expression": fields.text("expression", max_length=10_000),
        "rounding_function": fields.text("rounding_function", choices=("ceil", "floor", "round")),
        "rounding_precision": fields.integer("rounding_precision"),
        "weighted_interval": fields.text("weighted_interval", choices=("seconds",)),
    }
    merged = dict(current or {})
    merged.update({k: v for k, v in given.items() if fields.has(k)})
    aggregation = merged.get("aggregation_type")
    needs_field = aggregation is not None and aggregation not in _WITHOUT_FIELD
    if needs_field and not merged.get("field_name") and "field_name" not in fields.errors:
        fields.add("field_name", "value_is_mandatory")
    if aggregation in _WITHOUT_FIELD:
        merged["field_name"] = None
    if aggregation == "weighted_sum_agg":
        merged["weighted_interval"] = merged.get("weighted_interval") or "seconds"
    elif merged.get("weighted_interval") is not None:
        fields.add("weighted_interval", INVALID)
    fields.check()
    return merged


def metric_columns(metric: dict[str, Any]) -> dict[str, Any]:
    columns = database.payload_columns(metric, _COLUMNS, _ATTRIBUTES)
    return {**columns, "recurring": bool(columns["recurring"]), "filters": columns["filters"] or []}


_ATTRIBUTES = (
    "description",
    "expression",
    "rounding_function",
    "rounding_precision",
    "weighted_interval",
)


billable_metric_by_code = database.code_lookup("billable_metrics", live=True)


async def billable_metrics_by_ids(
    conn: Conn, org: uuid.UUID, ids: list[uuid.UUID]
) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM billable_metrics WHERE organization_id = $1 AND id = ANY($2::uuid[]) "
        "AND deleted_at IS NULL",
        org,
        ids,
    )
    return {r["id"]: r for r in rows}


billable_metric_by_id = database.id_lookup("billable_metrics")


_COLUMNS = (
    "code",
    "name",
    "aggregation_type",
    "field_name",
    "recurring",
    "filters",
    "attributes",
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
    await database.soft_delete(conn, "billable_metrics", metric_id, versioned=True)
    return plans


async def _parse(
    conn: Conn, org: uuid.UUID, raw: dict[str, Any], current: asyncpg.Record | None
) -> dict[str, Any]:
    return metric_columns(parse_metric(raw, database.stored_payload(current, _COLUMNS)))


async def _republish_plans(conn: Conn, plan_ids: list[uuid.UUID]) -> None:
    """Plans nest their charges' metric code: their records go again."""
    for plan_id in plan_ids:
        await plans.bump_plan(conn, plan_id)
        await records.enqueue_plan(conn, plan_id)


async def _changed(conn: Conn, before: asyncpg.Record | None, after: asyncpg.Record) -> None:
    await records.enqueue_billable_metric(conn, after["id"])
    if before is not None and before["code"] != after["code"]:
        await _republish_plans(conn, await plans_using_metric(conn, after["id"]))


async def _delete(conn: Conn, current: asyncpg.Record) -> asyncpg.Record:
    """As Lago does, the charges built on the metric go too (their plans republish)."""
    plan_ids = await delete_billable_metric(conn, current["id"])
    await records.enqueue_billable_metric(conn, current["id"])
    await _republish_plans(conn, plan_ids)
    return current


async def _render(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [records.billable_metric_body(r) for r in rows]


BILLABLE_METRICS = code_keyed.CodeKeyed(
    "billable_metric",
    "billable_metrics",
    billable_metric_by_code,
    _parse,
    _COLUMNS,
    _delete,
    _render,
    changed=_changed,
)
