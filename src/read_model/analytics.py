"""Lago's revenue analytics, month by month, from the organization's invoices in Postgres.

Every report covers the last `months` calendar months (the current one included) of the
invoices' issuing dates, which are already local dates (the customer's timezone, else the
organization's), and has a row for every month of the window in every currency asked (by
default each currency the organization invoiced), zero when nothing happened. Only
`finalized` invoices count: drafts may still change and voided ones never happened.

- gross revenue: the invoices' totals (what customers were asked to pay, after coupons,
  credit notes and prepaid credits, taxes included) and how many;
- invoice collection: the same, split by payment status;
- invoiced usage: the usage-based (charge) fees' amounts, by billable metric code;
- MRR: the subscription fees' amounts brought to a month (a yearly fee counts a twelfth, a
  quarterly one a third, a weekly one 52/12);
- overdue balance: what invoices whose payment is pending or failed still ask past their due
  date (issuing date plus the customer's net payment term), by the month of that due date,
  with the invoices' ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from meterflow.db import Conn
from read_model.invoices import AMOUNT_DUE_SQL


@dataclass(frozen=True, slots=True)
class Window:
    """What a report covers: `months` months ending with the one containing `today`, in
    `currency` (None: each the organization invoiced), for one customer (None: all)."""

    today: date
    months: int
    currency: str | None = None
    external_customer_id: str | None = None

    @property
    def first(self) -> date:
        index = self.today.year * 12 + self.today.month - 1 - (self.months - 1)
        return date(index // 12, index % 12 + 1, 1)


# $1 organization, $2 first month, $3 months, $4 currency, $5 external customer id.
_MONTHS = f"""
WITH months AS (
    SELECT (date_trunc('month', $2::date) + make_interval(months => n))::date AS month
    FROM generate_series(0, $3::int - 1) n
), currencies AS (
    SELECT DISTINCT currency FROM invoices
    WHERE organization_id = $1 AND status = 'finalized' AND ($4::text IS NULL OR currency = $4)
), finalized AS (
    SELECT i.*, date_trunc('month', i.issuing_date)::date AS month, {AMOUNT_DUE_SQL} AS due,
           i.issuing_date + coalesce((c.attributes ->> 'net_payment_term')::int, 0) AS due_date
    FROM invoices i JOIN customers c ON c.id = i.customer_id
    WHERE i.organization_id = $1 AND i.status = 'finalized'
      AND ($5::text IS NULL OR c.external_id = $5)
)
"""

_REPORTS = {
    "gross_revenues": """
SELECT m.month, cur.currency, coalesce(sum(f.total_amount_cents), 0) AS amount_cents,
       count(f.id) AS invoices_count
FROM months m CROSS JOIN currencies cur
LEFT JOIN finalized f ON f.month = m.month AND f.currency = cur.currency
GROUP BY 1, 2 ORDER BY 1, 2
""",
    "invoice_collections": """
SELECT m.month, cur.currency, s.payment_status,
       coalesce(sum(f.total_amount_cents), 0) AS amount_cents, count(f.id) AS invoices_count
FROM months m CROSS JOIN currencies cur
CROSS JOIN (VALUES ('pending'), ('succeeded'), ('failed')) s (payment_status)
LEFT JOIN finalized f ON f.month = m.month AND f.currency = cur.currency
    AND f.payment_status = s.payment_status
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""",
    "invoiced_usages": """
SELECT m.month, cur.currency, fee.item_code AS code,
       coalesce(sum(fee.amount_cents), 0) AS amount_cents
FROM months m CROSS JOIN currencies cur
LEFT JOIN finalized f ON f.month = m.month AND f.currency = cur.currency
LEFT JOIN fees fee ON fee.invoice_id = f.id AND fee.fee_type = 'charge'
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""",
    "mrrs": """
SELECT m.month, cur.currency,
       coalesce(round(sum(fee.amount_cents * CASE p.interval WHEN 'yearly' THEN 1.0 / 12
           WHEN 'quarterly' THEN 1.0 / 3 WHEN 'weekly' THEN 52.0 / 12 ELSE 1 END)), 0)::bigint
           AS amount_cents
FROM months m CROSS JOIN currencies cur
LEFT JOIN finalized f ON f.month = m.month AND f.currency = cur.currency
LEFT JOIN fees fee ON fee.invoice_id = f.id AND fee.fee_type = 'subscription'
LEFT JOIN subscriptions s ON s.id = fee.subscription_id
LEFT JOIN plans p ON p.id = s.plan_id
GROUP BY 1, 2 ORDER BY 1, 2
""",
    "overdue_balances": """
, overdue AS (
    SELECT f.id, f.currency, f.due, date_trunc('month', f.due_date)::date AS month
    FROM finalized f
    WHERE f.payment_status IN ('pending', 'failed') AND f.due_date < $6::date
)
SELECT m.month, cur.currency, coalesce(sum(o.due), 0) AS amount_cents,
       coalesce(array_agg(o.id::text ORDER BY o.id) FILTER (WHERE o.id IS NOT NULL), '{}')
           AS lago_invoice_ids
FROM months m CROSS JOIN currencies cur
LEFT JOIN overdue o ON o.month = m.month AND o.currency = cur.currency
GROUP BY 1, 2 ORDER BY 1, 2
""",
}

REPORTS = tuple(_REPORTS)


async def report(conn: Conn, org: uuid.UUID, name: str, window: Window) -> list[dict[str, Any]]:
    """The rows of report `name` (one of REPORTS) over `window`, oldest month first."""
    sql = _MONTHS + _REPORTS[name]
    args: list[Any] = [org, window.first, window.months, window.currency]
    args.append(window.external_customer_id)
    if name == "overdue_balances":
        args.append(window.today)
    rows = await conn.fetch(sql, *args)
    if name == "invoiced_usages":
        # A month's invoices without usage fees add a row without a code: kept only for a
        # month that has no usage at all.
        used = {(r["month"], r["currency"]) for r in rows if r["code"] is not None}
        rows = [r for r in rows if r["code"] is not None or (r["month"], r["currency"]) not in used]
    out = []
    for row in rows:
        body = dict(row)
        body["month"] = f"{row['month'].isoformat()}T00:00:00.000Z"
        body["amount_cents"] = int(row["amount_cents"])
        out.append(body)
    return out
