"""What the operator tools read from Postgres: subscriptions with their plan, charges and
timezone (the terms events are counted under), and issued invoices with their fees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class ChargeTerms:
    charge_id: str
    charge_model: str
    properties: dict[str, Any]
    metric_code: str
    aggregation_type: str
    field_name: str | None
    # When the charge's billable metric last changed (its aggregation decides the units).
    metric_updated_at: datetime


@dataclass(frozen=True, slots=True)
class Terms:
    """One subscription as the catalog holds it now. The catalog keeps no history:
    `plan_updated_at` (any change of the plan, its charges or their metrics) tells which
    invoices were priced under terms that are gone."""

    subscription_id: str
    external_id: str
    organization_id: str
    external_customer_id: str
    customer_timezone: str | None
    organization_timezone: str | None
    currency: str
    interval: str
    billing_time: str
    plan_amount_cents: int
    pay_in_advance: bool
    subscription_at: datetime
    terminated_at: datetime | None
    plan_updated_at: datetime
    charges: tuple[ChargeTerms, ...]

    def covers(self, instant: datetime) -> bool:
        """Whether an event at `instant` belongs to this subscription's life."""
        ended = self.terminated_at is not None and instant >= self.terminated_at
        return self.subscription_at <= instant and not ended


@dataclass(frozen=True, slots=True)
class Filters:
    """Which subscriptions an operator asked about (None: any)."""

    organization_id: str | None = None
    external_customer_id: str | None = None
    external_subscription_id: str | None = None

    def accepts(self, organization_id: str, external_subscription_id: str) -> bool:
        return (self.organization_id in (None, organization_id)) and (
            self.external_subscription_id in (None, external_subscription_id)
        )


_TERMS = """
SELECT s.id::text AS subscription_id, s.external_id, s.organization_id::text AS organization_id,
       c.external_id AS external_customer_id, c.timezone AS customer_timezone,
       o.timezone AS organization_timezone, coalesce(c.currency, p.amount_currency) AS currency,
       p.interval, s.billing_time, p.amount_cents AS plan_amount_cents, p.pay_in_advance,
       s.subscription_at,
       s.terminated_at, p.updated_at AS plan_updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'charge_id', ch.id::text, 'charge_model', ch.charge_model,
                    'properties', ch.properties, 'metric_code', m.code,
                    'aggregation_type', m.aggregation_type, 'field_name', m.field_name,
                    'metric_updated_at', m.updated_at)
                  ORDER BY ch.position)
                 FROM charges ch JOIN billable_metrics m ON m.id = ch.billable_metric_id
                 WHERE ch.plan_id = p.id), '[]'::jsonb)::text AS charges
FROM subscriptions s
JOIN customers c ON c.id = s.customer_id
JOIN plans p ON p.id = s.plan_id
JOIN organizations o ON o.id = s.organization_id
WHERE ($1::uuid IS NULL OR s.organization_id = $1::uuid)
  AND ($2::text IS NULL OR c.external_id = $2)
  AND ($3::text IS NULL OR s.external_id = $3)
  AND s.subscription_at IS NOT NULL
"""


async def load_terms(conn: asyncpg.Connection, filters: Filters) -> list[Terms]:
    rows = await conn.fetch(
        _TERMS,
        filters.organization_id,
        filters.external_customer_id,
        filters.external_subscription_id,
    )
    found = []
    for row in rows:
        charges = tuple(
            ChargeTerms(
                **{**c, "metric_updated_at": datetime.fromisoformat(c["metric_updated_at"])}
            )
            for c in orjson.loads(row["charges"])
        )
        values = dict(row)
        del values["charges"]
        found.append(Terms(**values, charges=tuple(charges)))
    return found


@dataclass(frozen=True, slots=True)
class StoredFee:
    fee_id: str
    fee_type: str
    charge_id: str | None
    item_code: str
    amount_cents: int
    units: Decimal
    events_count: int | None
    from_date: datetime
    to_date: datetime
    usage_period_start: datetime | None
    is_adjustment: bool


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    invoice_id: str
    number: str
    subscription_id: str
    organization_id: str
    status: str
    currency: str
    period_start: datetime
    period_end: datetime
    fees_amount_cents: int
    coupons_amount_cents: int
    taxes_amount_cents: int
    sub_total_excluding_taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    credit_notes_amount_cents: int
    prepaid_credit_amount_cents: int
    total_amount_cents: int
    created_at: datetime
    fees: tuple[StoredFee, ...]


_INVOICES = """
SELECT i.id::text AS invoice_id, i.number, i.subscription_id::text AS subscription_id,
       i.organization_id::text AS organization_id, i.status, i.currency, i.period_start,
       i.period_end, i.fees_amount_cents, i.coupons_amount_cents, i.taxes_amount_cents,
       i.sub_total_excluding_taxes_amount_cents, i.sub_total_including_taxes_amount_cents,
       i.credit_notes_amount_cents, i.prepaid_credit_amount_cents, i.total_amount_cents,
       i.created_at
FROM invoices i
WHERE i.invoice_type = 'subscription'
  AND ($1::uuid[] IS NULL OR i.subscription_id = ANY($1::uuid[]))
  AND ($2::uuid IS NULL OR i.id = $2::uuid)
ORDER BY i.period_start, i.number
"""

_FEES = """
SELECT f.id::text AS fee_id, f.invoice_id::text AS invoice_id, f.fee_type,
       f.charge_id::text AS charge_id, f.item_code, f.amount_cents, f.units, f.events_count,
       f.from_date, f.to_date, f.usage_period_start, f.is_adjustment
FROM fees f WHERE f.invoice_id = ANY($1::uuid[]) ORDER BY f.invoice_id, f.position
"""


async def load_invoices(
    conn: asyncpg.Connection, subscription_ids: list[str] | None, invoice_id: str | None = None
) -> list[StoredInvoice]:
    rows = await conn.fetch(_INVOICES, subscription_ids, invoice_id)
    fees: dict[str, list[StoredFee]] = {}
    for fee in await conn.fetch(_FEES, [r["invoice_id"] for r in rows]):
        values = dict(fee)
        invoice_id = values.pop("invoice_id")
        fees.setdefault(invoice_id, []).append(StoredFee(**values))
    return [StoredInvoice(**dict(r), fees=tuple(fees.get(r["invoice_id"], ()))) for r in rows]
