"""How the API shows a subscription, read the same way by the subscriptions API, the
invoices that embed it, the console and the catalog topic."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn, existing_row
from web.payload import isos

SELECT_SUBSCRIPTION = (
    "SELECT s.*, c.external_id AS external_customer_id, c.timezone AS customer_timezone, "
    "o.timezone AS organization_timezone, p.code AS plan_code, "
    "p.amount_cents AS plan_amount_cents, p.amount_currency AS plan_amount_currency, "
    "p.interval AS plan_interval "
    "FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
    "JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id "
)


async def subscription_by_id(conn: Conn, subscription_id: uuid.UUID) -> asyncpg.Record:
    return await existing_row(conn, SELECT_SUBSCRIPTION + "WHERE s.id = $1", subscription_id)


def subscription_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "lago_id": str(row["id"]),
        "external_id": row["external_id"],
        "lago_customer_id": str(row["customer_id"]),
        "external_customer_id": row["external_customer_id"],
        "billing_time": row["billing_time"],
        "name": row["name"],
        "plan_code": row["plan_code"],
        "plan_amount_cents": row["plan_amount_cents"],
        "plan_amount_currency": row["plan_amount_currency"],
        "status": row["status"],
        **isos(
            row,
            "created_at",
            "canceled_at",
            "started_at",
            "ending_at",
            "subscription_at",
            "terminated_at",
        ),
        "previous_plan_code": None,
        "next_plan_code": None,
        "downgrade_plan_date": None,
        "trial_ended_at": None,
        "current_billing_period_started_at": None,
        "current_billing_period_ending_at": None,
        "on_termination_credit_note": None,
        "on_termination_invoice": "generate",
        # Beyond Lago's fields, so that the aggregator needs no join:
        "lago_plan_id": str(row["plan_id"]),
        "plan_interval": row["plan_interval"],
        "applicable_timezone": row["customer_timezone"] or row["organization_timezone"],
    }
