"""The invoice write (asyncpg): each invoice with its fees, its number and webhooks, and the
coupons, wallets, credit notes and pending late usage it consumes, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from billing.invoice import (
    AppliedCoupon,
    CouponUse,
)
from billing.invoice_terms import CustomerCoupon
from invoicing import terms
from invoicing.closed_period import (
    PeriodClosed,
)
from invoicing.pricing import (
    PricedInvoice,
)
from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model import credit_notes, invoice_rows
from read_model.drafts import CreditsChanged, consume_wallet


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The invoicer changes no session state (no SET, LISTEN or session locks), so a
    connection goes back to the pool without the default reset query's round trip."""


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(
        dsn,
        schema=schema,
        size=size,
        init=db.use_orjson,
        reset=_keep_session,
        timeout=10,
        command_timeout=30,
    )


class AlreadyInvoiced(Exception):
    """The period got its invoice meanwhile (a concurrent redelivery): roll back, skip."""


# Fee columns written from parallel arrays (one element per fee), with their array types.
_FEE_COLUMNS = (
    ("id", "uuid"),
    ("position", "int"),
    ("fee_type", "text"),
    ("charge_id", "uuid"),
    ("billable_metric_id", "uuid"),
    ("item_code", "text"),
    ("item_name", "text"),
    ("invoice_display_name", "text"),
    ("amount_cents", "bigint"),
    ("precise_amount", "numeric"),
    ("units", "numeric"),
    ("events_count", "bigint"),
    ("pay_in_advance", "bool"),
    ("invoiceable", "bool"),
    ("from_date", "timestamptz"),
    ("to_date", "timestamptz"),
    ("usage_period_start", "timestamptz"),
    ("is_adjustment", "bool"),
    ("aggregation", "jsonb"),
    ("amount_details", "jsonb"),
    ("precise_coupons_amount_cents", "numeric"),
    ("taxes_amount_cents", "bigint"),
    ("taxes_precise_amount_cents", "numeric"),
    ("taxes_rate", "numeric"),
    ("applied_taxes", "jsonb"),
)
# The fee columns written (and read back by late_usage) as they stand on each PricedFee
# (item_code to is_adjustment), and the attributes of each fee's FeeTaxes written as its
# four tax columns.
FEE_ATTRIBUTES = tuple(name for name, _ in _FEE_COLUMNS[5:18])
_FEE_TAX_ATTRIBUTES = ("precise_coupons_cents", "taxes_cents", "taxes_precise_cents", "taxes_rate")
assert FEE_ATTRIBUTES[0] == "item_code" and FEE_ATTRIBUTES[-1] == "is_adjustment"
_FIRST_FEE_PARAM = 26
_FEE_NAMES = ", ".join(name for name, _ in _FEE_COLUMNS)
_FEE_ARRAYS = ", ".join(
    f"${_FIRST_FEE_PARAM + i}::{kind}[]" for i, (_, kind) in enumerate(_FEE_COLUMNS)
)

# The invoice's webhooks (invoice.drafted or invoice.created), rendered when first sent.
_INVOICE_WEBHOOKS = webhook_outbox.FAN_OUT.format(
    type="(CASE WHEN $7 = 'draft' THEN 'invoice.drafted' ELSE 'invoice.created' END)",
    object_type="'invoice'",
    object_id="(SELECT id FROM invoice)",
    payload="NULL",
    organization="$2",
)

# One statement, so one transaction: the customer's next sequential id, the invoice, its
# fees and its webhooks. A second invoice for the period violates the unique period_key and
# the statement rolls back whole, sequence increment included (no gap in the numbering).
_WRITE_INVOICE = f"""
WITH sequence AS (
    INSERT INTO invoice_sequences (customer_id, last_sequential_id) VALUES ($3, 1)
    ON CONFLICT (customer_id) DO UPDATE
        SET last_sequential_id = invoice_sequences.last_sequential_id + 1
    RETURNING last_sequential_id AS n
), invoice AS (
    INSERT INTO invoices (id, organization_id, customer_id, subscription_id, period_key,
        sequential_id, number, status, currency, issuing_date, period_start, period_end,
        fees_amount_cents, coupons_amount_cents, taxes_amount_cents,
        sub_total_excluding_taxes_amount_cents, sub_total_including_taxes_amount_cents,
        prepaid_credit_amount_cents, credit_notes_amount_cents, total_amount_cents,
        billing_periods, grace_until, finalized_at, closed_at, applied_taxes, credits,
        prepaid_granted_credit_amount_cents, prepaid_purchased_credit_amount_cents)
    SELECT $1, $2, $3, $4, $5, n,
        $6 || CASE WHEN n < 1000 THEN lpad(n::text, 3, '0') ELSE n::text END,
        $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
        CASE WHEN $7 = 'finalized' THEN now() END, $22, $23, $24, $25::bigint,
        $17::bigint - $25::bigint
    FROM sequence
    RETURNING id, sequential_id
), fee AS (
    INSERT INTO fees (invoice_id, subscription_id, currency, {_FEE_NAMES})
    SELECT invoice.id, $4, $8, f.*
    FROM invoice, unnest({_FEE_ARRAYS}) AS f
    RETURNING 1
), webhook AS ({_INVOICE_WEBHOOKS}    RETURNING 1
)
SELECT sequential_id, (SELECT count(*) FROM fee) AS fees FROM invoice
"""


async def insert_invoice(
    conn: Conn,
    closed: PeriodClosed,
    loaded: terms.Loaded,
    priced: PricedInvoice,
    pending_keys: Sequence[str] = (),
) -> uuid.UUID:
    """Write the invoice and its fees atomically; AlreadyInvoiced (and nothing written)
    when the period got its invoice meanwhile. `pending_keys` name the pending late usage
    billed on it as adjustments (`terms.Loaded.pending`): marked as billed in the same
    transaction, or CreditsChanged when another invoice billed one meanwhile."""
    terms = loaded.terms
    invoice_id = uuid.uuid4()
    t = priced.totals
    organization_prefix = loaded.number_prefix or invoice_rows.document_prefix(
        loaded.organization_name, terms.organization_id
    )
    prefix = f"{organization_prefix}-{loaded.customer_sequence:03d}-"
    billing_periods = [
        {
            "lago_subscription_id": terms.subscription_id,
            "external_subscription_id": terms.external_id,
            "lago_plan_id": terms.plan.plan_id,
            "subscription_from_datetime": iso_instant(priced.subscription_from),
            "subscription_to_datetime": iso_instant(priced.subscription_to),
            "charges_from_datetime": iso_instant(closed.period_start),
            "charges_to_datetime": iso_instant(closed.period_end),
            "invoicing_reason": priced.invoicing_reason,
        }
    ]
    fees = priced.fees
    columns: list[list[Any]] = [
        [uuid.uuid4() for _ in fees],
        list(range(len(fees))),
        [f.kind.value for f in fees],
        [None if f.charge_id is None else uuid.UUID(f.charge_id) for f in fees],
        [None if f.billable_metric_id is None else uuid.UUID(f.billable_metric_id) for f in fees],
        *([getattr(f, name) for f in fees] for name in FEE_ATTRIBUTES),
        [None if f.aggregation is None else dict(f.aggregation) for f in fees],
        [dict(f.amount_details) for f in fees],
        *([getattr(ft, name) for ft in t.fee_taxes] for name in _FEE_TAX_ATTRIBUTES),
        [
            invoice_rows.fee_taxes(f, f.amount_cents - ft.precise_coupons_cents)
            for f, ft in zip(fees, t.fee_taxes, strict=True)
        ],
    ]
    applied_taxes = invoice_rows.applied_taxes(priced.fees, t, priced.currency)
    credits = coupon_credits(priced.coupon_uses, priced.currency)
    args = (invoice_id, closed, loaded, priced, prefix, billing_periods, applied_taxes, credits)
    if (
        not priced.coupon_uses
        and not priced.wallet_uses
        and not priced.credit_note_uses
        and not pending_keys
    ):
        # One statement, atomic on its own: no BEGIN and COMMIT round trips.
        await _write_invoice(conn, *args, columns)
        return invoice_id
    # The coupons' and wallets' new state commits with the invoice or not at all: a period
    # already invoiced (AlreadyInvoiced) or a state changed since pricing (CreditsChanged)
    # rolls everything back.
    async with conn.transaction():
        await _write_invoice(conn, *args, columns)
        for coupon, use in priced.coupon_uses:
            await _use_coupon(conn, coupon, use)
        for wallet, cents in priced.wallet_uses:
            await consume_wallet(conn, wallet, cents, invoice_id)
        try:
            await credit_notes.consume(conn, priced.credit_note_uses, invoice_id)
        except credit_notes.CreditNoteChanged as exc:
            raise CreditsChanged(f"credit note {exc}") from None
        if priced.status == "draft" and priced.coupon_uses:
            await conn.execute(
                "UPDATE invoices SET coupon_uses = $2 WHERE id = $1",
                invoice_id,
                coupon_uses_json(priced.coupon_uses),
            )
        if pending_keys:
            status = await conn.execute(
                "UPDATE late_usage SET outcome = 'adjusted', invoice_id = $2, updated_at = now() "
                "WHERE late_key = ANY($1::text[]) AND outcome = 'pending'",
                list(pending_keys),
                invoice_id,
            )
            if status != f"UPDATE {len(pending_keys)}":
                raise CreditsChanged(f"pending late usage of {closed.subscription_id}")
    return invoice_id


def coupon_credits(
    coupon_uses: Sequence[tuple[CustomerCoupon, CouponUse]], currency: str
) -> list[dict[str, Any]]:
    """The invoice's `credits`: what each coupon took, as Lago lists it."""
    return [
        {
            "lago_id": str(uuid.uuid4()),
            "amount_cents": use.amount_cents,
            "amount_currency": currency,
            "before_taxes": True,
            "item": {
                "lago_item_id": coupon.coupon_id,
                "type": "coupon",
                "code": coupon.coupon_code,
                "name": coupon.coupon_name,
            },
        }
        for coupon, use in coupon_uses
    ]


def coupon_left(state: AppliedCoupon) -> dict[str, Any]:
    return {
        "amount_cents_remaining": state.amount_cents_remaining,
        "frequency_duration_remaining": state.frequency_duration_remaining,
    }


def coupon_uses_json(
    coupon_uses: Sequence[tuple[CustomerCoupon, CouponUse]],
) -> list[dict[str, Any]]:
    """A draft's `coupon_uses`: each used coupon's state before the draft and after it."""
    return [
        {
            "applied_coupon_id": coupon.applied_coupon_id,
            "before": coupon_left(coupon.state),
            "after": coupon_left(use.after),
        }
        for coupon, use in coupon_uses
    ]


async def _write_invoice(
    conn: Conn,
    invoice_id: uuid.UUID,
    closed: PeriodClosed,
    loaded: terms.Loaded,
    priced: PricedInvoice,
    prefix: str,
    billing_periods: list[dict[str, Any]],
    applied_taxes: list[dict[str, Any]],
    credits: list[dict[str, Any]],
    columns: list[list[Any]],
) -> None:
    terms, t = loaded.terms, priced.totals
    try:
        row = await conn.fetchrow(
            _WRITE_INVOICE,
            invoice_id,
            uuid.UUID(terms.organization_id),
            uuid.UUID(terms.customer_id),
            uuid.UUID(terms.subscription_id),
            priced.period_key,
            prefix,
            priced.status,
            priced.currency,
            priced.issuing_date,
            closed.period_start,
            closed.period_end,
            t.fees_amount_cents,
            t.coupons_amount_cents,
            t.taxes_amount_cents,
            t.sub_total_excluding_taxes_amount_cents,
            t.sub_total_including_taxes_amount_cents,
            t.prepaid_credit_amount_cents,
            t.credit_notes_amount_cents,
            t.total_amount_cents,
            billing_periods,
            priced.grace_until,
            closed.closed_at,
            applied_taxes,
            credits,
            priced.prepaid_granted_cents,
            *columns,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "invoices_period_key_key":
            raise
        raise AlreadyInvoiced(priced.period_key) from None
    assert row is not None and row["fees"] == len(priced.fees)


async def _use_coupon(conn: Conn, coupon: CustomerCoupon, use: CouponUse) -> None:
    """Write the coupon's state after this invoice, if it is still the state priced with."""
    before, after = coupon.state, use.after
    status = await conn.execute(
        "UPDATE applied_coupons SET amount_cents_remaining = $2, "
        "frequency_duration_remaining = $3, "
        "status = CASE WHEN $4 THEN 'terminated' ELSE 'active' END, "
        "terminated_at = CASE WHEN $4 THEN now() END, updated_at = now() "
        "WHERE id = $1 AND status = 'active' "
        "AND amount_cents_remaining IS NOT DISTINCT FROM $5 "
        "AND frequency_duration_remaining IS NOT DISTINCT FROM $6",
        uuid.UUID(coupon.applied_coupon_id),
        after.amount_cents_remaining,
        after.frequency_duration_remaining,
        after.terminated,
        before.amount_cents_remaining,
        before.frequency_duration_remaining,
    )
    if status != "UPDATE 1":
        raise CreditsChanged(f"applied coupon {coupon.applied_coupon_id}")


def iso_instant(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
