"""A subscription's lifetime usage: the historical amount its owner states, plus the charge
fees of its finalized invoices, plus the current period's usage (the aggregator's)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn, existing_row
from web.payload import iso

# Stated before meterflow, and invoiced since (charge fees of finalized invoices of every
# subscription that carried this external id): what lifetime usage adds the current to.
_BEFORE_NOW = """
SELECT lu.id, coalesce(lu.external_historical_usage_amount_cents, 0) AS historical,
    (SELECT coalesce(sum(fee.amount_cents), 0) FROM subscriptions s
     JOIN invoices i ON i.subscription_id = s.id AND i.status = 'finalized'
     JOIN fees fee ON fee.invoice_id = i.id AND fee.fee_type = 'charge'
     WHERE s.organization_id = $1 AND s.external_id = $2)::bigint AS invoiced
FROM (SELECT 1) one
LEFT JOIN lifetime_usages lu ON lu.organization_id = $1 AND lu.external_subscription_id = $2
"""


async def before_now(conn: Conn, org: uuid.UUID, external_id: str) -> asyncpg.Record:
    """`historical` and `invoiced` cents of the subscription's lifetime (and the row's `id`,
    None until an amount was stated)."""
    return await existing_row(conn, _BEFORE_NOW, org, external_id)


async def state_historical(conn: Conn, org: uuid.UUID, external_id: str, cents: int) -> None:
    await conn.execute(
        "INSERT INTO lifetime_usages (id, organization_id, external_subscription_id, "
        "external_historical_usage_amount_cents) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (organization_id, external_subscription_id) DO UPDATE SET "
        "external_historical_usage_amount_cents = EXCLUDED.external_historical_usage_amount_cents, "
        "updated_at = now()",
        uuid.uuid4(),
        org,
        external_id,
        cents,
    )


def lifetime_body(
    subscription: asyncpg.Record, before: asyncpg.Record, usage: dict[str, Any]
) -> dict[str, Any]:
    """Lago's lifetime usage object; `usage` is the current period's `customer_usage`."""
    return {
        "lago_id": str(before["id"] or subscription["id"]),
        "lago_subscription_id": str(subscription["id"]),
        "external_subscription_id": subscription["external_id"],
        "external_historical_usage_amount_cents": before["historical"],
        "invoiced_usage_amount_cents": before["invoiced"],
        "current_usage_amount_cents": usage["amount_cents"],
        "from_datetime": iso(subscription["started_at"]),
        "to_datetime": usage["to_datetime"],
        "usage_thresholds": [],
    }
