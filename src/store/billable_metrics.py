"""Billable metrics' rules and SQL: what to count in events, and how (Lago's aggregations)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from billing.aggregations import AGGREGATIONS
from meterflow.db import Conn
from store import database
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
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            fields.add(f"filters.{i}", INVALID)
            continue
        f = Fields(item, _FILTER, prefix=f"filters.{i}.")
        key = f.text("key", required=True)
        values = f.strings("values")
        if not values:
            f.add("values", "value_is_mandatory")
        fields.merge(f.errors)
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
    return {
        "code": metric["code"],
        "name": metric["name"],
        "aggregation_type": metric["aggregation_type"],
        "field_name": metric.get("field_name"),
        "recurring": bool(metric.get("recurring")),
        "filters": metric.get("filters") or [],
        "attributes": {
            k: metric.get(k)
            for k in (
                "description",
                "expression",
                "rounding_function",
                "rounding_precision",
                "weighted_interval",
            )
        },
    }


def current_metric(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "code": row["code"],
        "name": row["name"],
        "aggregation_type": row["aggregation_type"],
        "field_name": row["field_name"],
        "recurring": row["recurring"],
        "filters": row["filters"],
        **row["attributes"],
    }


async def billable_metric_by_code(
    conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = (
        "SELECT * FROM billable_metrics WHERE organization_id = $1 AND code = $2 "
        "AND deleted_at IS NULL"
    )
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)


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


async def billable_metric_by_id(conn: Conn, metric_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM billable_metrics WHERE id = $1", metric_id)
    assert row is not None
    return row


_COLUMNS = (
    "code",
    "name",
    "aggregation_type",
    "field_name",
    "recurring",
    "filters",
    "attributes",
)


async def insert_billable_metric(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    metric_id = uuid.uuid4()
    sql = database.insert_row("billable_metrics", _COLUMNS)
    await conn.execute(sql, metric_id, org, *database.values(columns, _COLUMNS))
    return metric_id


async def update_billable_metric(conn: Conn, metric_id: uuid.UUID, columns: dict[str, Any]) -> None:
    sql = database.update_row("billable_metrics", _COLUMNS, versioned=True)
    await conn.execute(sql, metric_id, *database.values(columns, _COLUMNS))


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
) -> tuple[list[asyncpg.Record], int]:
    return await database.organization_page(conn, "billable_metrics", org, limit, offset, live=True)
