"""`GET /api/v1/customers/{id}/past_usage`: a subscription's usage in its closed periods, newest
first, read from the charge fees of its invoices (voided ones left out), in the shape of
current usage. A period's late events, billed as adjustment fees on a later invoice, count in
the period they happened in; its `lago_invoice_id` is the invoice that billed the period."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from meterflow.db import Conn
from web.payload import iso

_FROM = "FROM fees f JOIN invoices i ON i.id = f.invoice_id"
_CHARGE_FEES = """
WHERE i.organization_id = $1 AND f.subscription_id = ANY($2::uuid[])
  AND f.fee_type = 'charge' AND i.status <> 'voided'
"""

_PERIODS = f"""
SELECT f.subscription_id, coalesce(f.usage_period_start, f.from_date) AS usage_start,
       min(f.from_date) AS from_date, max(f.to_date) AS to_date, min(i.currency) AS currency,
       (array_agg(i.id ORDER BY f.is_adjustment, i.created_at))[1] AS invoice_id,
       (array_agg(i.issuing_date ORDER BY f.is_adjustment, i.created_at))[1] AS issuing_date
{_FROM} {_CHARGE_FEES}
GROUP BY 1, 2 ORDER BY usage_start DESC, f.subscription_id LIMIT $3 OFFSET $4
"""

_COUNT = f"""
SELECT count(*) FROM (SELECT DISTINCT f.subscription_id, coalesce(f.usage_period_start,
       f.from_date) {_FROM} {_CHARGE_FEES}) periods
"""

_FEES = f"""
SELECT f.subscription_id, coalesce(f.usage_period_start, f.from_date) AS usage_start,
       f.charge_id, f.units, f.events_count, f.amount_cents, f.taxes_amount_cents,
       f.invoice_display_name, f.item_code, f.item_name, f.billable_metric_id,
       ch.charge_model, m.code AS metric_code, m.name AS metric_name, m.aggregation_type
{_FROM} LEFT JOIN charges ch ON ch.id = f.charge_id
LEFT JOIN billable_metrics m ON m.id = f.billable_metric_id {_CHARGE_FEES}
  AND coalesce(f.usage_period_start, f.from_date) = ANY($3::timestamptz[])
  AND ($4::text IS NULL OR coalesce(m.code, f.item_code) = $4)
ORDER BY f.position, i.created_at
"""


@dataclass(frozen=True, slots=True)
class PastUsageQuery:
    """Which subscriptions (every one with the external id, of the customer), which metric
    (None: all) and at most how many periods (None: all)."""

    subscription_ids: list[uuid.UUID]
    billable_metric_code: str | None
    periods_count: int | None


async def subscriptions_of(
    conn: Conn, org: uuid.UUID, external_customer_id: str, external_subscription_id: str
) -> list[uuid.UUID]:
    """The ids of the customer's subscriptions with this external id, live or ended."""
    rows = await conn.fetch(
        "SELECT s.id FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
        "WHERE s.organization_id = $1 AND s.external_id = $2 AND c.external_id = $3",
        org,
        external_subscription_id,
        external_customer_id,
    )
    return [r["id"] for r in rows]


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _charge_usage(fees: list[asyncpg.Record], currency: str) -> dict[str, Any]:
    """One charge's fees of a period (its fee and any later adjustments) as one usage line."""
    first = fees[0]
    units = sum((f["units"] for f in fees), Decimal(0))
    counts = [f["events_count"] for f in fees if f["events_count"] is not None]
    return {
        "units": str(units),
        "total_aggregated_units": str(units),
        "events_count": sum(counts) if counts else None,
        "amount_cents": sum(f["amount_cents"] for f in fees),
        "amount_currency": currency,
        "charge": {
            "lago_id": _text(first["charge_id"]),
            "charge_model": first["charge_model"],
            "invoice_display_name": first["invoice_display_name"],
        },
        "billable_metric": {
            "lago_id": _text(first["billable_metric_id"]),
            "name": first["metric_name"] or first["item_name"],
            "code": first["metric_code"] or first["item_code"],
            "aggregation_type": first["aggregation_type"],
        },
        "filters": [],
        "grouped_usage": [],
    }


async def past_usage(
    conn: Conn, org: uuid.UUID, query: PastUsageQuery, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of usage periods, newest first, and how many there are (at most
    `periods_count`)."""
    ids = query.subscription_ids
    total = int(await conn.fetchval(_COUNT, org, ids))
    if query.periods_count is not None:
        total = min(total, query.periods_count)
    limit = max(0, min(limit, total - offset))
    periods = await conn.fetch(_PERIODS, org, ids, limit, offset) if limit else []
    starts = list({p["usage_start"] for p in periods})
    by_period: dict[tuple[uuid.UUID, Any], dict[Any, list[asyncpg.Record]]] = {}
    for fee in await conn.fetch(_FEES, org, ids, starts, query.billable_metric_code):
        charges = by_period.setdefault((fee["subscription_id"], fee["usage_start"]), {})
        charges.setdefault(fee["charge_id"] or fee["item_code"], []).append(fee)
    bodies = []
    for p in periods:
        currency = p["currency"]
        charges = by_period.get((p["subscription_id"], p["usage_start"]), {})
        lines = [_charge_usage(fees, currency) for fees in charges.values()]
        amount = sum(line["amount_cents"] for line in lines)
        taxes = sum(f["taxes_amount_cents"] for fees in charges.values() for f in fees)
        bodies.append(
            {
                "from_datetime": iso(p["from_date"]),
                "to_datetime": iso(p["to_date"]),
                "issuing_date": p["issuing_date"].isoformat(),
                "lago_invoice_id": str(p["invoice_id"]),
                "currency": currency,
                "amount_cents": amount,
                "taxes_amount_cents": taxes,
                "total_amount_cents": amount + taxes,
                "charges_usage": lines,
            }
        )
    return bodies, total
