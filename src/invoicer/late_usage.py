"""Late usage applied once (`late_usage` rows): merged into its period's draft, priced
again, or kept for the subscription's next invoice."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg

from billing.invoice import (
    AppliedCoupon,
    FeeKind,
)
from billing.invoice_terms import CustomerCoupon, PricedFee, TaxTerms
from invoicing import credits, terms, write
from invoicing.closed_period import (
    LateUsage,
    charge_json,
)
from invoicing.pricing import (
    refresh_draft,
)
from meterflow.db import Conn
from read_model import invoice_rows


async def apply_late_usage(
    conn: Conn, late: LateUsage, loaded: terms.Loaded
) -> tuple[str, uuid.UUID | None]:
    """Apply late usage once, in one transaction with its `late_usage` row: merged into its
    period's invoice while that is a draft ('refreshed'), else kept for the subscription's
    next invoice ('pending'); 'duplicate' (nothing changed) when its key was applied
    before. The draft is locked, so the sweep finalizes it before or after, never during."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO late_usage (late_key, organization_id, subscription_id, period_key, "
            "period_start, period_end, charges, outcome) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') "
            "ON CONFLICT (late_key) DO NOTHING RETURNING true",
            late.late_key,
            uuid.UUID(late.organization_id),
            uuid.UUID(late.subscription_id),
            late.period_key,
            late.period_start,
            late.period_end,
            [charge_json(c) for c in late.charges],
        )
        if inserted is None:
            return "duplicate", None
        invoice = await conn.fetchrow(
            "SELECT * FROM invoices WHERE period_key = $1 FOR UPDATE", late.period_key
        )
        if invoice is None or invoice["status"] != "draft" or _legacy_coupons(invoice):
            return "pending", None if invoice is None else invoice["id"]
        await _refresh(conn, invoice, late, loaded)
        await conn.execute(
            "UPDATE late_usage SET outcome = 'refreshed', invoice_id = $2, updated_at = now() "
            "WHERE late_key = $1",
            late.late_key,
            invoice["id"],
        )
        return "refreshed", invoice["id"]


def _legacy_coupons(invoice: asyncpg.Record) -> bool:
    """A draft written before `coupon_uses` existed that used coupons: their shares cannot be
    given back, so it is not refreshed (its late usage waits for the next invoice)."""
    return bool(invoice["credits"]) and not invoice["coupon_uses"]


# The coupons a refresh prices with: the customer's active ones and those the draft used
# (a use may have terminated one), oldest first, locked until the refresh commits.
_REFRESH_COUPONS = (
    "SELECT ac.*, cp.code AS coupon_code, cp.name AS coupon_name, cp.coupon_type "
    "FROM applied_coupons ac JOIN coupons cp ON cp.id = ac.coupon_id "
    "WHERE ac.customer_id = $1 AND (ac.status = 'active' OR ac.id = ANY($2::uuid[])) "
    "ORDER BY ac.created_at, ac.id FOR UPDATE OF ac"
)


def coupon_given_back(current: AppliedCoupon, use: Mapping[str, Any]) -> AppliedCoupon:
    """The coupon with the draft's use given back: what the draft took of its remaining
    amount and periods is added to what it has now."""

    def back(now: int | None, key: str) -> int | None:
        before: int | None = use["before"][key]
        after: int | None = use["after"][key]
        if now is None or before is None or after is None:
            # Not a number to add to: restore it if nothing changed it since the draft.
            return before if now == after else now
        return now + before - after

    return AppliedCoupon(
        coupon_type=current.coupon_type,
        frequency=current.frequency,
        amount_cents=current.amount_cents,
        amount_currency=current.amount_currency,
        percentage_rate=current.percentage_rate,
        frequency_duration_remaining=back(
            current.frequency_duration_remaining, "frequency_duration_remaining"
        ),
        amount_cents_remaining=back(current.amount_cents_remaining, "amount_cents_remaining"),
        code=current.code,
    )


def _draft_fee(row: asyncpg.Record, tax_of: Mapping[str, TaxTerms]) -> PricedFee:
    """A fee of a draft as pricing knows fees, with the taxes the draft applied to it."""
    return PricedFee(
        kind=FeeKind(row["fee_type"]),
        **{name: row[name] for name in write.FEE_ATTRIBUTES},
        charge_id=None if row["charge_id"] is None else str(row["charge_id"]),
        billable_metric_id=(
            None if row["billable_metric_id"] is None else str(row["billable_metric_id"])
        ),
        aggregation=row["aggregation"],
        amount_details=row["amount_details"] or {},
        taxes=tuple(tax_of[code] for code in sorted(row["applied_taxes"] or {}) if code in tax_of),
    )


async def _refresh(
    conn: Conn, invoice: asyncpg.Record, late: LateUsage, loaded: terms.Loaded
) -> None:
    """Price the draft again with the late usage merged in, and write its fees, totals,
    taxes, credits and the coupons' new state."""
    tax_of = {
        t["tax_code"]: TaxTerms(
            t["lago_tax_id"],
            t["tax_code"],
            t["tax_name"],
            Decimal(t["tax_rate"]),
            t["tax_description"],
        )
        for t in invoice["applied_taxes"]
    }
    rows = await conn.fetch(
        "SELECT * FROM fees WHERE invoice_id = $1 ORDER BY position", invoice["id"]
    )
    fees = [_draft_fee(r, tax_of) for r in rows]
    used = {u["applied_coupon_id"]: u for u in invoice["coupon_uses"]}
    coupon_rows = await conn.fetch(
        _REFRESH_COUPONS, invoice["customer_id"], [uuid.UUID(i) for i in used]
    )
    current: dict[str, AppliedCoupon] = {}
    ended: dict[str, bool] = {}
    coupons: list[CustomerCoupon] = []
    for row in coupon_rows:
        state = terms.applied_coupon_state(dict(row))
        key = str(row["id"])
        current[key], ended[key] = state, row["status"] != "active"
        coupons.append(
            CustomerCoupon(
                applied_coupon_id=key,
                coupon_id=str(row["coupon_id"]),
                coupon_code=row["coupon_code"],
                coupon_name=row["coupon_name"],
                state=coupon_given_back(state, used[key]) if key in used else state,
            )
        )
    draft = refresh_draft(loaded.terms, invoice["currency"], fees, late, coupons)
    new_state = {c.applied_coupon_id: c.state for c in coupons if c.applied_coupon_id in used}
    new_state.update({c.applied_coupon_id: use.after for c, use in draft.coupon_uses})
    for key, state in new_state.items():
        if (credits.coupon_left(state), state.terminated) == (
            credits.coupon_left(current[key]),
            ended[key],
        ):
            continue
        await conn.execute(
            "UPDATE applied_coupons SET amount_cents_remaining = $2, "
            "frequency_duration_remaining = $3, "
            "status = CASE WHEN $4 THEN 'terminated' ELSE 'active' END, "
            "terminated_at = CASE WHEN $4 THEN coalesce(terminated_at, now()) END, "
            "updated_at = now() WHERE id = $1",
            uuid.UUID(key),
            state.amount_cents_remaining,
            state.frequency_duration_remaining,
            state.terminated,
        )
    t = draft.totals
    await conn.executemany(
        "UPDATE fees SET amount_cents = $2, precise_amount = $3, units = $4, "
        "events_count = $5, aggregation = $6, amount_details = $7, "
        "precise_coupons_amount_cents = $8, taxes_amount_cents = $9, "
        "taxes_precise_amount_cents = $10, taxes_rate = $11, applied_taxes = $12 "
        "WHERE id = $1",
        [
            (
                row["id"],
                f.amount_cents,
                f.precise_amount,
                f.units,
                f.events_count,
                None if f.aggregation is None else dict(f.aggregation),
                dict(f.amount_details),
                ft.precise_coupons_cents,
                ft.taxes_cents,
                ft.taxes_precise_cents,
                ft.taxes_rate,
                invoice_rows.fee_taxes(f, f.amount_cents - ft.precise_coupons_cents),
            )
            for row, f, ft in zip(rows, draft.fees, t.fee_taxes, strict=True)
        ],
    )
    await conn.execute(
        "UPDATE invoices SET fees_amount_cents = $2, coupons_amount_cents = $3, "
        "taxes_amount_cents = $4, sub_total_excluding_taxes_amount_cents = $5, "
        "sub_total_including_taxes_amount_cents = $6, total_amount_cents = $7, "
        "applied_taxes = $8, credits = $9, coupon_uses = $10, updated_at = now() "
        "WHERE id = $1",
        invoice["id"],
        t.fees_amount_cents,
        t.coupons_amount_cents,
        t.taxes_amount_cents,
        t.sub_total_excluding_taxes_amount_cents,
        t.sub_total_including_taxes_amount_cents,
        t.sub_total_including_taxes_amount_cents
        - invoice["credit_notes_amount_cents"]
        - invoice["prepaid_credit_amount_cents"],
        invoice_rows.applied_taxes(draft.fees, t, invoice["currency"]),
        credits.coupon_credits(draft.coupon_uses, invoice["currency"]),
        credits.coupon_uses_json(draft.coupon_uses),
    )
