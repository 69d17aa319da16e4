"""Usage alerts' rules and SQL (`/api/v1/subscriptions/{external_id}/alerts`): an alert
watches a subscription's current usage amount, or one metric's amount or units, against
ascending thresholds; `webhooks.alert_monitor` checks them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from billing.alert_thresholds import ALERT_TYPES, METRIC_TYPES, Threshold, json_number
from meterflow.db import Conn
from store import billable_metrics, database
from store.records import billable_metric_body
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, MANDATORY, Fields, iso

_ALERT = {"alert_type", "code", "name", "billable_metric_code", "thresholds"}
_THRESHOLD = {"code", "value", "recurring"}
MAX_THRESHOLDS = 20
_HIGHEST = Decimal(10) ** 18


def _thresholds(fields: Fields, raw: list[Any]) -> list[Threshold]:
    out = []
    for _, _, t in fields.each("thresholds", raw, _THRESHOLD):
        value = t.decimal("value", low=Decimal(0), high=_HIGHEST, low_open=True, required=True)
        recurring = bool(t.flag("recurring"))
        code = t.text("code")
        if value is not None:
            out.append(Threshold(code, value, recurring))
    values = [t.value for t in out]
    if not raw or len(raw) > MAX_THRESHOLDS:
        fields.add("thresholds", INVALID)
    elif sum(t.recurring for t in out) > 1 or len(set(values)) != len(values):
        fields.add("thresholds", INVALID)  # one recurring threshold at most, values distinct
    return sorted(out, key=lambda t: t.value)


async def parse_alert(
    conn: Conn, org: uuid.UUID, fields: Fields, current: asyncpg.Record | None
) -> dict[str, Any]:
    """An alert's columns from an input (`current`: the alert an update changes, whose type
    stays and whose fields the input leaves out are kept); raises ValidationFailed naming
    every bad field, NotFound for an unknown metric."""
    kept: dict[str, Any] = {} if current is None else {k: current[k] for k in _WRITTEN}
    creating = current is None
    if creating:
        kept["alert_type"] = fields.text("alert_type", required=True, choices=ALERT_TYPES)
    elif fields.has("alert_type"):
        fields.add("alert_type", "not_editable")
    raw_thresholds = fields.array("thresholds", required=creating)
    given: dict[str, Any] = {
        "code": fields.text("code", required=creating),
        "name": fields.text("name"),
        "thresholds": None
        if raw_thresholds is None
        else [t.body() for t in _thresholds(fields, raw_thresholds)],
    }
    metric_code = fields.text("billable_metric_code")
    columns = {**kept, **{k: v for k, v in given.items() if fields.has(k)}}
    for name in ("code", "thresholds"):
        if not creating and fields.has(name) and fields.raw[name] is None:
            fields.add(name, MANDATORY)
    alert_type = columns["alert_type"]
    if alert_type in METRIC_TYPES and metric_code is None and not kept.get("billable_metric_id"):
        fields.add("billable_metric_code", MANDATORY)
    elif alert_type not in METRIC_TYPES and metric_code is not None:
        fields.add("billable_metric_code", INVALID)
    fields.check()
    columns.setdefault("billable_metric_id", None)
    columns.setdefault("name", None)
    if metric_code is not None:
        metric = await billable_metrics.billable_metric_by_code(conn, org, metric_code)
        if metric is None:
            raise NotFound("billable_metric")
        columns["billable_metric_id"] = metric["id"]
    return columns


_SELECT = (
    "SELECT a.*, s.external_id AS external_subscription_id FROM alerts a "
    "JOIN subscriptions s ON s.id = a.subscription_id "
    "WHERE a.deleted_at IS NULL AND a.subscription_id = $1"
)


async def alerts_of(conn: Conn, subscription_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_SELECT + " ORDER BY a.created_at, a.code", subscription_id)


async def alert_by_code(
    conn: Conn, subscription_id: uuid.UUID, code: str, *, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        _SELECT + " AND a.code = $2" + (" FOR UPDATE OF a" if lock else ""), subscription_id, code
    )
    if row is None:
        raise NotFound("alert")
    return row


async def _claim_code(conn: Conn, org: uuid.UUID, subscription_id: uuid.UUID, code: str) -> None:
    """Hold `code` among the subscription's live alerts until the transaction ends."""
    await database.claim_name(conn, org, f"alert:{subscription_id}", code)
    taken = await conn.fetchval(
        "SELECT 1 FROM alerts WHERE subscription_id = $1 AND code = $2 AND deleted_at IS NULL",
        subscription_id,
        code,
    )
    if taken:
        raise ValidationFailed({"code": ["value_already_exist"]})


async def create_alerts(
    conn: Conn, org: uuid.UUID, subscription: asyncpg.Record, raws: list[Any]
) -> list[dict[str, Any]]:
    """Create every alert of `raws` or none (the first bad one refuses them all, its
    problems named `alerts.<i>.<field>` when there are several)."""
    created = []
    for i, raw in enumerate(raws):
        prefix = f"alerts.{i}." if len(raws) > 1 else ""
        fields = Fields(raw if isinstance(raw, dict) else {}, _ALERT, prefix=prefix)
        if not isinstance(raw, dict):
            fields.add("", INVALID)
        columns = await parse_alert(conn, org, fields, None)
        await _claim_code(conn, org, subscription["id"], columns["code"])
        alert_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO alerts (id, organization_id, subscription_id, code, name, alert_type, "
            "billable_metric_id, thresholds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            alert_id,
            org,
            subscription["id"],
            *(columns[k] for k in _WRITTEN),
        )
        created.append(alert_id)
    rows = {r["id"]: r for r in await alerts_of(conn, subscription["id"])}
    return await alert_bodies(conn, [rows[a] for a in created])


_WRITTEN = ("code", "name", "alert_type", "billable_metric_id", "thresholds")


async def change_alert(
    conn: Conn, org: uuid.UUID, alert: asyncpg.Record, raw: dict[str, Any]
) -> dict[str, Any]:
    """Change an alert's (locked) code, name, metric or thresholds; its type stays."""
    columns = await parse_alert(conn, org, Fields(raw, _ALERT), alert)
    if columns["code"] != alert["code"]:
        await _claim_code(conn, org, alert["subscription_id"], columns["code"])
    await conn.execute(
        "UPDATE alerts SET code = $2, name = $3, billable_metric_id = $5, thresholds = $6, "
        "updated_at = now() WHERE id = $1 AND alert_type = $4",
        alert["id"],
        *(columns[k] for k in _WRITTEN),
    )
    row = await alert_by_code(conn, alert["subscription_id"], columns["code"])
    return (await alert_bodies(conn, [row]))[0]


async def delete_alerts(conn: Conn, alerts: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Delete alerts (their triggered history stays); their bodies as they were."""
    await conn.execute(
        "UPDATE alerts SET deleted_at = now(), updated_at = now() WHERE id = ANY($1::uuid[])",
        [a["id"] for a in alerts],
    )
    return await alert_bodies(conn, alerts)


async def alert_bodies(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """The alerts as Lago shows them, each with its billable metric when it has one."""
    metric_ids = [r["billable_metric_id"] for r in rows if r["billable_metric_id"] is not None]
    metrics = {
        m["id"]: billable_metric_body(m)
        for m in await conn.fetch(
            "SELECT * FROM billable_metrics WHERE id = ANY($1::uuid[])", metric_ids
        )
    }
    return [
        {
            "lago_id": str(r["id"]),
            "lago_organization_id": str(r["organization_id"]),
            "external_subscription_id": r["external_subscription_id"],
            "lago_wallet_id": None,
            "wallet_code": None,
            "billable_metric": metrics.get(r["billable_metric_id"]),
            "alert_type": r["alert_type"],
            "code": r["code"],
            "name": r["name"],
            "direction": "increasing",
            "previous_value": json_number(r["previous_value"]),
            "last_processed_at": iso(r["last_processed_at"]),
            "thresholds": r["thresholds"],
            "created_at": iso(r["created_at"]),
        }
        for r in rows
    ]


async def alert_summaries(conn: Conn, subscription_id: uuid.UUID) -> list[asyncpg.Record]:
    """The subscription's live alerts as the console shows them: type, metric code, the last
    value checked, thresholds, and when one was last crossed."""
    return await conn.fetch(
        "SELECT a.code, a.name, a.alert_type, bm.code AS metric_code, a.previous_value, "
        "a.thresholds, a.last_processed_at, (SELECT max(t.triggered_at) FROM triggered_alerts t "
        "WHERE t.alert_id = a.id) AS last_triggered_at FROM alerts a "
        "LEFT JOIN billable_metrics bm ON bm.id = a.billable_metric_id "
        "WHERE a.subscription_id = $1 AND a.deleted_at IS NULL ORDER BY a.created_at",
        subscription_id,
    )
