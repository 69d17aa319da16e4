"""The API body of each catalog object, and its record for the catalog topic.

A catalog record's body is the object exactly as the API returns it, so the aggregator
reads the same fields a Lago client sees, plus a few that spare it a join (documented in
the README): a subscription carries its plan's lago_id and interval and the customer's
applicable timezone; a plan nests its charges with their billable metric's id and code.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg

from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.db import Conn
from read_model.customers import customer_body, customer_by_id
from read_model.subscriptions import subscription_body, subscription_by_id
from store import billable_metrics, catalog_publisher, charges, plans
from web.payload import iso

log = logging.getLogger(__name__)


async def _enqueue(
    conn: Conn,
    kind: CatalogKind,
    row: asyncpg.Record,
    body: dict[str, Any],
    *,
    organization_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Queue `row`'s catalog record (`body`; none once deleted) and return `body`;
    `organization_id`: the owner, when the row does not name it (an organization is its
    own)."""
    owner = row["organization_id"] if organization_id is None else organization_id
    deleted = "deleted_at" in row and row["deleted_at"] is not None
    log.info(
        "catalog.changed kind=%s lago_id=%s version=%d organization_id=%s deleted=%s",
        kind.value,
        row["id"],
        row["version"],
        owner,
        deleted,
    )
    await catalog_publisher.enqueue(
        conn,
        CatalogRecord(
            kind=kind,
            lago_id=str(row["id"]),
            organization_id=str(owner),
            version=row["version"],
            body=None if deleted else body,
        ),
    )
    return body


async def enqueue_organization(conn: Conn, row: asyncpg.Record) -> None:
    """Queue the organization's catalog record: its name and timezone (the default of its
    customers' billing periods)."""
    body = {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "timezone": row["timezone"],
        "created_at": iso(row["created_at"]),
    }
    await _enqueue(conn, CatalogKind.ORGANIZATION, row, body, organization_id=row["id"])


async def enqueue_customer(conn: Conn, customer_id: uuid.UUID) -> dict[str, Any]:
    """Queue the customer's catalog record; returns its API body."""
    row = await customer_by_id(conn, customer_id)
    return await _enqueue(conn, CatalogKind.CUSTOMER, row, customer_body(row))


def billable_metric_body(row: asyncpg.Record) -> dict[str, Any]:
    a: dict[str, Any] = row["attributes"]
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "code": row["code"],
        "description": a.get("description"),
        "aggregation_type": row["aggregation_type"],
        "field_name": row["field_name"],
        "recurring": row["recurring"],
        "rounding_function": a.get("rounding_function"),
        "rounding_precision": a.get("rounding_precision"),
        "weighted_interval": a.get("weighted_interval"),
        "expression": a.get("expression") or "",
        "filters": row["filters"],
        "created_at": iso(row["created_at"]),
    }


async def enqueue_billable_metric(conn: Conn, metric_id: uuid.UUID) -> dict[str, Any]:
    row = await billable_metrics.billable_metric_by_id(conn, metric_id)
    return await _enqueue(conn, CatalogKind.BILLABLE_METRIC, row, billable_metric_body(row))


def charge_body(row: asyncpg.Record) -> dict[str, Any]:
    a: dict[str, Any] = row["attributes"]
    return {
        "lago_id": str(row["id"]),
        "lago_billable_metric_id": str(row["billable_metric_id"]),
        # The input's name for the same id, echoed so that readers keyed on it (the
        # aggregator's catalog view) find the metric either way.
        "billable_metric_id": str(row["billable_metric_id"]),
        "billable_metric_code": row["billable_metric_code"],
        "code": a.get("code"),
        "invoice_display_name": a.get("invoice_display_name"),
        "created_at": iso(row["created_at"]),
        "charge_model": row["charge_model"],
        "pay_in_advance": row["pay_in_advance"],
        "invoiceable": row["invoiceable"],
        "regroup_paid_fees": a.get("regroup_paid_fees"),
        "prorated": row["prorated"],
        "min_amount_cents": row["min_amount_cents"],
        "properties": row["properties"],
        "filters": row["filters"],
        "taxes": [],
    }


def plan_body(row: asyncpg.Record, charges: list[asyncpg.Record]) -> dict[str, Any]:
    a: dict[str, Any] = row["attributes"]
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "invoice_display_name": a.get("invoice_display_name"),
        "created_at": iso(row["created_at"]),
        "code": row["code"],
        "interval": row["interval"],
        "description": a.get("description"),
        "amount_cents": row["amount_cents"],
        "amount_currency": row["amount_currency"],
        "trial_period": a.get("trial_period"),
        "pay_in_advance": row["pay_in_advance"],
        "bill_charges_monthly": a.get("bill_charges_monthly"),
        "bill_fixed_charges_monthly": a.get("bill_fixed_charges_monthly"),
        "charges": [charge_body(c) for c in charges],
        "fixed_charges": [],
        "taxes": [],
        "usage_thresholds": [],
        "metadata": a.get("metadata"),
    }


async def plan_bodies(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    of_plan = await charges.charges_of(conn, [r["id"] for r in rows])
    return [plan_body(r, of_plan[r["id"]]) for r in rows]


async def enqueue_plan(conn: Conn, plan_id: uuid.UUID) -> dict[str, Any]:
    row = await plans.plan_by_id(conn, plan_id)
    return await _enqueue(conn, CatalogKind.PLAN, row, (await plan_bodies(conn, [row]))[0])


async def enqueue_subscription(conn: Conn, subscription_id: uuid.UUID) -> dict[str, Any]:
    row = await subscription_by_id(conn, subscription_id)
    return await _enqueue(conn, CatalogKind.SUBSCRIPTION, row, subscription_body(row))
