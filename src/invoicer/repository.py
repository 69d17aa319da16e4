"""Postgres access of the invoicer (asyncpg): the catalog it prices with (taxes, applied
coupons and wallets included), and the invoices and fees it writes, each invoice with its
fees and the coupons and credits it consumes in one transaction; late usage applied once
(`late_usage`), refreshing its period's draft or waiting for the next invoice."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from billing.invoice import (
    AppliedCoupon,
    CouponFrequency,
    CouponType,
    CouponUse,
    FeeKind,
    InvoiceTotals,
)
from billing.money import round_cents
from invoicer.closed_period import (
    Adjustment,
    LateUsage,
    PeriodClosed,
    charge_json,
    charges_from_json,
)
from invoicer.errors import PoisonMessage
from invoicer.pricing import (
    ChargeTerms,
    CustomerCoupon,
    InvoicedUsage,
    PlanTerms,
    PricedFee,
    PricedInvoice,
    SubscriptionTerms,
    TaxTerms,
    WalletTerms,
    refresh_draft,
)
from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model import credit_notes
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


# The invoice's taxes: the plan's, else the customer's, else the organization's defaults
# (Lago's precedence); a charge's own taxes, read with the charge, replace them on its
# fees. Rates travel as text so that they stay exact decimals.
_TAXES = (
    "SELECT coalesce(json_agg(json_build_object('id', t.id, 'code', t.code, 'name', t.name, "
    "'rate', t.rate::text, 'description', t.description) ORDER BY t.code), '[]') "
    "FROM taxes t WHERE t.id IN ("
    "SELECT tax_id FROM plan_taxes WHERE plan_id = s.plan_id "
    "UNION ALL SELECT tax_id FROM customer_taxes WHERE customer_id = s.customer_id "
    "AND NOT EXISTS (SELECT 1 FROM plan_taxes WHERE plan_id = s.plan_id) "
    "UNION ALL SELECT id FROM taxes WHERE organization_id = s.organization_id "
    "AND applied_to_organization "
    "AND NOT EXISTS (SELECT 1 FROM plan_taxes WHERE plan_id = s.plan_id) "
    "AND NOT EXISTS (SELECT 1 FROM customer_taxes WHERE customer_id = s.customer_id))"
)

# The customer's active applied coupons in Lago's order: oldest first.
_COUPONS = (
    "SELECT coalesce(json_agg(json_build_object('id', ac.id, 'coupon_id', ac.coupon_id, "
    "'coupon_code', cp.code, 'coupon_name', cp.name, 'coupon_type', cp.coupon_type, "
    "'frequency', ac.frequency, 'amount_cents', ac.amount_cents, "
    "'amount_currency', ac.amount_currency, 'percentage_rate', ac.percentage_rate::text, "
    "'frequency_duration_remaining', ac.frequency_duration_remaining, "
    "'amount_cents_remaining', ac.amount_cents_remaining) ORDER BY ac.created_at, ac.id), '[]') "
    "FROM applied_coupons ac JOIN coupons cp ON cp.id = ac.coupon_id "
    "WHERE ac.customer_id = s.customer_id AND ac.status = 'active'"
)

# The customer's usable wallets in Lago's order: priority (1 first), then oldest.
_WALLETS = (
    "SELECT coalesce(json_agg(json_build_object('id', w.id, 'currency', w.currency, "
    "'balance_cents', w.balance_cents, 'granted_balance_cents', w.granted_balance_cents) "
    "ORDER BY w.priority, w.created_at, w.id), '[]') "
    "FROM wallets w WHERE w.customer_id = s.customer_id AND w.status = 'active' "
    "AND w.balance_cents > 0 AND (w.expiration_at IS NULL OR w.expiration_at > now())"
)

# The customer's available credit notes, oldest first.
_CREDIT_NOTES = credit_notes.AVAILABLE_JSON.format(customer="s.customer_id")

# Late usage waiting for the subscription's next invoice: of periods before the closing one.
_PENDING = "lu.subscription_id = s.id AND lu.outcome = 'pending' AND lu.period_start < $5"

_TERMS = (
    "SELECT EXISTS (SELECT 1 FROM invoices WHERE period_key = $3) AS invoiced, "
    "c.sequential_id AS customer_sequence, o.name AS organization_name, "
    "s.id, s.organization_id, s.customer_id, s.external_id, s.billing_time, "
    "s.subscription_at, c.timezone AS customer_timezone, c.attributes AS customer_attributes, "
    "o.timezone AS organization_timezone, o.attributes AS organization_attributes, "
    "p.id AS plan_id, p.code AS plan_code, "
    "p.name AS plan_name, p.attributes AS plan_attributes, p.interval, p.amount_cents, "
    "p.amount_currency, p.pay_in_advance, "
    "(SELECT coalesce(json_agg(json_build_object('id', ch.id, 'charge_model', ch.charge_model, "
    "'properties', ch.properties, 'invoiceable', ch.invoiceable, 'attributes', ch.attributes, "
    "'metric_id', bm.id, 'metric_code', bm.code, 'metric_name', bm.name, "
    "'taxes', (SELECT coalesce(json_agg(json_build_object('id', t.id, 'code', t.code, "
    "'name', t.name, 'rate', t.rate::text, 'description', t.description) ORDER BY t.code), "
    "'[]') FROM charge_taxes ct JOIN taxes t ON t.id = ct.tax_id WHERE ct.charge_id = ch.id)"
    ")), '[]') "
    "FROM charges ch JOIN billable_metrics bm ON bm.id = ch.billable_metric_id "
    "WHERE ch.id = ANY($4::uuid[]) OR ch.id IN (SELECT (c ->> 'charge_id')::uuid "
    "FROM late_usage lu CROSS JOIN jsonb_array_elements(lu.charges) c "
    f"WHERE {_PENDING})) AS charges, "
    "(SELECT coalesce(json_agg(json_build_object('late_key', lu.late_key, "
    "'period_start', lu.period_start, 'period_end', lu.period_end, 'charges', lu.charges) "
    f"ORDER BY lu.created_at, lu.late_key), '[]') FROM late_usage lu WHERE {_PENDING}) "
    "AS pending, "
    f"({_TAXES}) AS taxes, ({_COUPONS}) AS coupons, ({_WALLETS}) AS wallets, "
    f"({_CREDIT_NOTES}) AS credit_notes "
    "FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
    "JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id "
    "WHERE s.id = $1 AND s.organization_id = $2"
)


def _charge_ids(closed: PeriodClosed | LateUsage) -> set[str]:
    ids = {c.charge_id for c in closed.charges}
    ids.update(c.charge_id for a in closed.adjustments for c in a.charges)
    return ids


def _configured_grace(attributes: dict[str, Any]) -> int | None:
    configuration = attributes.get("billing_configuration") or {}
    days = configuration.get("invoice_grace_period") if isinstance(configuration, dict) else None
    return days if isinstance(days, int) and not isinstance(days, bool) and days >= 0 else None


def grace_days(customer: dict[str, Any], organization: dict[str, Any]) -> int:
    """The customer's invoice grace period when it has one (0 included), else the
    organization's, else none."""
    own = _configured_grace(customer)
    return own if own is not None else (_configured_grace(organization) or 0)


def _tax_terms(rows: list[dict[str, Any]]) -> tuple[TaxTerms, ...]:
    return tuple(
        TaxTerms(str(t["id"]), t["code"], t["name"], Decimal(t["rate"]), t["description"])
        for t in rows
    )


def applied_coupon_state(row: Mapping[str, Any]) -> AppliedCoupon:
    rate = row["percentage_rate"]
    return AppliedCoupon(
        coupon_type=CouponType(row["coupon_type"]),
        frequency=CouponFrequency(row["frequency"]),
        amount_cents=row["amount_cents"],
        amount_currency=row["amount_currency"],
        percentage_rate=None if rate is None else Decimal(rate),
        frequency_duration_remaining=row["frequency_duration_remaining"],
        amount_cents_remaining=row["amount_cents_remaining"],
        code=str(row["id"]),
    )


class AlreadyInvoiced(Exception):
    """The period got its invoice meanwhile (a concurrent redelivery): roll back, skip."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """The catalog terms of a closed period, and what numbering its invoice needs."""

    terms: SubscriptionTerms
    already_invoiced: bool
    customer_sequence: int
    organization_name: str
    # The organization's own `document_number_prefix` (PUT /api/v1/organizations), if set.
    number_prefix: str | None = None
    # Late usage of earlier periods waiting for this invoice (`late_usage` rows 'pending'),
    # oldest first, and their keys.
    pending: tuple[Adjustment, ...] = ()
    pending_keys: tuple[str, ...] = ()


async def load(conn: Conn, closed: PeriodClosed | LateUsage) -> Loaded:
    """The subscription, plan, customer and charges the message names, and whether the
    period is already invoiced; PoisonMessage when the subscription is not in the catalog
    (ingest writes Postgres before the aggregator can know a subscription, so a missing
    one will never appear)."""
    row = await conn.fetchrow(
        _TERMS,
        uuid.UUID(closed.subscription_id),
        uuid.UUID(closed.organization_id),
        closed.period_key,
        [uuid.UUID(i) for i in _charge_ids(closed)],
        closed.period_start,
    )
    if row is None:
        raise PoisonMessage(
            "subscription_not_found",
            f"subscription {closed.subscription_id} of organization {closed.organization_id}",
        )
    charges: list[dict[str, Any]] = row["charges"]
    plan_attributes: dict[str, Any] = row["plan_attributes"] or {}
    terms = SubscriptionTerms(
        subscription_id=str(row["id"]),
        organization_id=str(row["organization_id"]),
        customer_id=str(row["customer_id"]),
        external_id=row["external_id"],
        billing_time=row["billing_time"],
        subscription_at=row["subscription_at"],
        timezone=row["customer_timezone"],
        organization_timezone=row["organization_timezone"],
        invoice_grace_period_days=grace_days(
            row["customer_attributes"] or {}, row["organization_attributes"] or {}
        ),
        plan=PlanTerms(
            plan_id=str(row["plan_id"]),
            code=row["plan_code"],
            name=row["plan_name"],
            invoice_display_name=plan_attributes.get("invoice_display_name"),
            interval=row["interval"],
            amount_cents=row["amount_cents"],
            amount_currency=row["amount_currency"],
            pay_in_advance=row["pay_in_advance"],
        ),
        charges={
            str(c["id"]): ChargeTerms(
                charge_id=str(c["id"]),
                charge_model=c["charge_model"],
                properties=c["properties"] or {},
                invoiceable=c["invoiceable"],
                billable_metric_id=str(c["metric_id"]),
                metric_code=c["metric_code"],
                metric_name=c["metric_name"],
                invoice_display_name=(c["attributes"] or {}).get("invoice_display_name"),
                taxes=_tax_terms(c["taxes"]),
            )
            for c in charges
        },
        taxes=_tax_terms(row["taxes"]),
        coupons=tuple(
            CustomerCoupon(
                applied_coupon_id=str(c["id"]),
                coupon_id=str(c["coupon_id"]),
                coupon_code=c["coupon_code"],
                coupon_name=c["coupon_name"],
                state=applied_coupon_state(c),
            )
            for c in row["coupons"]
        ),
        wallets=tuple(
            WalletTerms(str(w["id"]), w["currency"], w["balance_cents"], w["granted_balance_cents"])
            for w in row["wallets"]
        ),
        credit_notes=credit_notes.from_json(row["credit_notes"]),
    )
    return Loaded(
        terms=terms,
        already_invoiced=row["invoiced"],
        customer_sequence=row["customer_sequence"],
        organization_name=row["organization_name"],
        number_prefix=(row["organization_attributes"] or {}).get("document_number_prefix"),
        pending=tuple(
            Adjustment(
                datetime.fromisoformat(p["period_start"]),
                datetime.fromisoformat(p["period_end"]),
                charges_from_json(p["charges"]),
            )
            for p in row["pending"]
        ),
        pending_keys=tuple(p["late_key"] for p in row["pending"]),
    )


async def invoiced_usage(conn: Conn, closed: PeriodClosed) -> InvoicedUsage:
    """The aggregation states already invoiced for each late period's charges."""
    wanted = [(c.charge_id, a.period_start) for a in closed.adjustments for c in a.charges]
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT charge_id, usage_period_start, aggregation FROM fees "
        "WHERE subscription_id = $1 AND charge_id = ANY($2::uuid[]) "
        "AND usage_period_start = ANY($3::timestamptz[]) AND aggregation IS NOT NULL "
        "ORDER BY created_at, position",
        uuid.UUID(closed.subscription_id),
        [uuid.UUID(c) for c, _ in wanted],
        [s for _, s in wanted],
    )
    out: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((str(r["charge_id"]), r["usage_period_start"]), []).append(r["aggregation"])
    return out


def document_prefix(organization_name: str, organization_id: str) -> str:
    """Lago's default invoice number prefix: three letters of the name, four of the id."""
    letters = "".join(ch for ch in organization_name.upper() if ch.isalnum())[:3] or "INV"
    return f"{letters}-{organization_id.replace('-', '')[-4:].upper()}"


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
    loaded: Loaded,
    priced: PricedInvoice,
    pending_keys: Sequence[str] = (),
) -> uuid.UUID:
    """Write the invoice and its fees atomically; AlreadyInvoiced (and nothing written)
    when the period got its invoice meanwhile. `pending_keys` name the pending late usage
    billed on it as adjustments (`Loaded.pending`): marked as billed in the same
    transaction, or CreditsChanged when another invoice billed one meanwhile."""
    terms = loaded.terms
    invoice_id = uuid.uuid4()
    t = priced.totals
    organization_prefix = loaded.number_prefix or document_prefix(
        loaded.organization_name, terms.organization_id
    )
    prefix = f"{organization_prefix}-{loaded.customer_sequence:03d}-"
    billing_periods = [
        {
            "lago_subscription_id": terms.subscription_id,
            "external_subscription_id": terms.external_id,
            "lago_plan_id": terms.plan.plan_id,
            "subscription_from_datetime": _iso(priced.subscription_from),
            "subscription_to_datetime": _iso(priced.subscription_to),
            "charges_from_datetime": _iso(closed.period_start),
            "charges_to_datetime": _iso(closed.period_end),
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
        [f.item_code for f in fees],
        [f.item_name for f in fees],
        [f.invoice_display_name for f in fees],
        [f.amount_cents for f in fees],
        [f.precise_amount for f in fees],
        [f.units for f in fees],
        [f.events_count for f in fees],
        [f.pay_in_advance for f in fees],
        [f.invoiceable for f in fees],
        [f.from_date for f in fees],
        [f.to_date for f in fees],
        [f.usage_period_start for f in fees],
        [f.is_adjustment for f in fees],
        [None if f.aggregation is None else dict(f.aggregation) for f in fees],
        [dict(f.amount_details) for f in fees],
        [ft.precise_coupons_cents for ft in t.fee_taxes],
        [ft.taxes_cents for ft in t.fee_taxes],
        [ft.taxes_precise_cents for ft in t.fee_taxes],
        [ft.taxes_rate for ft in t.fee_taxes],
        [
            _fee_taxes(f, f.amount_cents - ft.precise_coupons_cents)
            for f, ft in zip(fees, t.fee_taxes, strict=True)
        ],
    ]
    applied_taxes = _applied_taxes(priced.fees, t, priced.currency)
    credits = _credits(priced.coupon_uses, priced.currency)
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
                _coupon_uses(priced.coupon_uses),
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


def _applied_taxes(
    fees: Sequence[PricedFee], totals: InvoiceTotals, currency: str
) -> list[dict[str, Any]]:
    """The invoice's `applied_taxes`: each tax with its rate, base and amount."""
    tax_of = {tax.code: tax for fee in fees for tax in fee.taxes}
    return [
        {
            "lago_id": str(uuid.uuid4()),
            "lago_tax_id": tax_of[a.code].tax_id,
            "tax_name": tax_of[a.code].name,
            "tax_code": a.code,
            "tax_rate": str(a.rate),
            "tax_description": tax_of[a.code].description,
            "amount_cents": a.amount_cents,
            "amount_currency": currency,
            "taxable_base_amount_cents": str(a.taxable_base_cents),
        }
        for a in totals.applied_taxes
    ]


def _credits(
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


def _coupon_left(state: AppliedCoupon) -> dict[str, Any]:
    return {
        "amount_cents_remaining": state.amount_cents_remaining,
        "frequency_duration_remaining": state.frequency_duration_remaining,
    }


def _coupon_uses(coupon_uses: Sequence[tuple[CustomerCoupon, CouponUse]]) -> list[dict[str, Any]]:
    """A draft's `coupon_uses`: each used coupon's state before the draft and after it."""
    return [
        {
            "applied_coupon_id": coupon.applied_coupon_id,
            "before": _coupon_left(coupon.state),
            "after": _coupon_left(use.after),
        }
        for coupon, use in coupon_uses
    ]


def _fee_taxes(fee: PricedFee, base: Decimal) -> dict[str, Any]:
    """The fee's amount of each of its taxes, rounded half up ({code: {...}})."""
    return {
        tax.code: {
            "lago_id": str(uuid.uuid4()),
            "amount_cents": round_cents(base * tax.rate / 100),
        }
        for tax in fee.taxes
    }


async def _write_invoice(
    conn: Conn,
    invoice_id: uuid.UUID,
    closed: PeriodClosed,
    loaded: Loaded,
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


async def apply_late_usage(
    conn: Conn, late: LateUsage, loaded: Loaded
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
        item_code=row["item_code"],
        item_name=row["item_name"],
        invoice_display_name=row["invoice_display_name"],
        amount_cents=row["amount_cents"],
        precise_amount=row["precise_amount"],
        units=row["units"],
        events_count=row["events_count"],
        from_date=row["from_date"],
        to_date=row["to_date"],
        pay_in_advance=row["pay_in_advance"],
        invoiceable=row["invoiceable"],
        charge_id=None if row["charge_id"] is None else str(row["charge_id"]),
        billable_metric_id=(
            None if row["billable_metric_id"] is None else str(row["billable_metric_id"])
        ),
        usage_period_start=row["usage_period_start"],
        is_adjustment=row["is_adjustment"],
        aggregation=row["aggregation"],
        amount_details=row["amount_details"] or {},
        taxes=tuple(tax_of[code] for code in sorted(row["applied_taxes"] or {}) if code in tax_of),
    )


async def _refresh(conn: Conn, invoice: asyncpg.Record, late: LateUsage, loaded: Loaded) -> None:
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
        state = applied_coupon_state(dict(row))
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
        if (_coupon_left(state), state.terminated) == (_coupon_left(current[key]), ended[key]):
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
                _fee_taxes(f, f.amount_cents - ft.precise_coupons_cents),
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
        _applied_taxes(draft.fees, t, invoice["currency"]),
        _credits(draft.coupon_uses, invoice["currency"]),
        _coupon_uses(draft.coupon_uses),
    )


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
