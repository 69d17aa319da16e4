"""Pricing a closed period into an invoice: the subscription fee, one fee per charge, fees
for late events of earlier periods, then Lago's invoice arithmetic. Pure: no I/O.

Choices worth knowing:

- A plan paid in advance bills, on the invoice closing period N, the subscription fee of
  period N+1 (none once terminated). Nothing else in meterflow issues an invoice when a
  subscription starts, so the first close also bills the first period's advance fee.
- A partial period (a calendar subscription's first, a terminated one's last) pays the
  plan's price pro rata of its local days, as Lago does.
- Late events are priced on top of everything already invoiced for their period: the
  adjustment fee is price(invoiced + late) - price(invoiced), using the aggregation state
  stored with those fees, so non-additive aggregations (max, unique count) and tiered
  models stay right. A late event never lowers an invoice (no credit notes yet).
- Taxes, chosen per fee as Lago does: a charge's own taxes on its fees; otherwise the
  plan's when it has any, else the customer's, else the organization's defaults
  (`applied_to_organization`).
  Rounding is `billing.invoice`'s (Lago's): per tax over the invoice, half up.
- Coupons apply when the invoice is created, draft or not (Lago applies them when it
  computes the invoice): the customer's active applied coupons, oldest first, on the fees
  before taxes. A fixed-amount coupon in another currency than the invoice's is skipped
  (it stays for a later invoice in its currency). Their new state is written in the
  invoice's transaction, guarded by the state read here (see `invoicing.write`).
- A draft is refreshed by late usage of its own period (`refresh_draft`): each affected
  charge fee is priced again on the merged aggregation state, price(invoiced + late), and
  the invoice's coupons and taxes are computed again by the same `invoice_totals` as at
  creation (the fees keep the taxes the draft applied). A finalized invoice is never
  changed: its period's late usage is billed as adjustment fees on the next invoice.
- Prepaid credits pay an invoice when it is finalized (Lago: at finalization): at once
  for an invoice with no grace period, else when its draft is finalized
  (`read_model.drafts.finalize_draft`, by the sweep or the finalize endpoint). Wallets
  in the invoice's currency pay in order of priority, then age, up to the total after
  taxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from billing.aggregations import Aggregation, SumAggregation, aggregation_from_dict
from billing.charge_models import CHARGE_MODELS, ChargeAmount
from billing.charge_models.charge_amount import ChargeUsage as ModelUsage
from billing.credit_notes import CreditNoteTerms, available_cents, split_credit
from billing.errors import BillingError
from billing.invoice import (
    CouponUse,
    FeeKind,
    InvoiceTotals,
    plan_fee_cents,
    subscription_fee_period,
)
from billing.invoice_terms import (
    CustomerCoupon,
    PricedFee,
    TaxTerms,
    WalletTerms,
    invoice_totals,
)
from billing.money import minor_units
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    resolve_timezone,
)
from billing.value import value
from billing.wallet import consume_prepaid, granted_first
from invoicing.closed_period import ChargeUsage, LateUsage, PeriodClosed
from invoicing.errors import PoisonMessage
from invoicing.subscription_terms import ChargeTerms, InvoicedUsage, PlanTerms, SubscriptionTerms


@value
class PricedInvoice:
    period_key: str
    currency: str
    issuing_date: date
    status: str  # "draft" while a grace period runs, else "finalized"
    grace_until: datetime | None
    invoicing_reason: str
    subscription_from: datetime
    subscription_to: datetime
    fees: tuple[PricedFee, ...]
    totals: InvoiceTotals
    # Each coupon used, with its row as read and what it took (its `after` is its new state).
    coupon_uses: tuple[tuple[CustomerCoupon, CouponUse], ...] = ()
    # Each wallet that pays, with its balances as read and how much it pays.
    wallet_uses: tuple[tuple[WalletTerms, int], ...] = ()
    # Each credit note that pays (before the wallets), as read, and how much it pays.
    credit_note_uses: tuple[tuple[CreditNoteTerms, int], ...] = ()

    @property
    def prepaid_granted_cents(self) -> int:
        """How much of the prepaid credits was granted (each wallet's granted go first)."""
        return sum(
            granted_first(cents, w.granted_balance_cents)[0] for w, cents in self.wallet_uses
        )


_SUM = SumAggregation.aggregation_type


def _restore(snapshot: Mapping[str, Any]) -> Aggregation | None:
    try:
        return aggregation_from_dict(snapshot)
    except (ValueError, TypeError, KeyError, BillingError):
        return None


def _price(
    charge: ChargeTerms, units: Decimal, events: int, state: Aggregation | None
) -> ChargeAmount:
    per_event: list[Decimal] | None = None
    if isinstance(state, SumAggregation) and state.events is not None:
        per_event = state.event_amounts()
    terms = charge.model_terms
    try:
        return CHARGE_MODELS[charge.charge_model].amount(
            terms, ModelUsage(units, events, per_event)
        )
    except BillingError as exc:
        raise PoisonMessage("invalid_charge_properties", f"{charge.charge_id}: {exc}") from exc


def amount_details(model: str, priced: ChargeAmount) -> dict[str, Any]:
    """The fee's `amount_details` (Lago's names: ranges for tiered models, free/paid units)."""
    details: dict[str, Any] = {k: str(v) for k, v in priced.details.items()}
    if priced.tiers:
        key = "graduated_ranges" if model == "graduated" else f"{model}_ranges"
        details[key] = [
            {
                "from_value": str(t.from_value),
                "to_value": None if t.to_value is None else str(t.to_value),
                "units": str(t.units),
                "per_unit_amount": str(t.per_unit_amount),
                "flat_unit_amount": str(t.flat_amount),
                "total_with_flat_amount": str(t.amount),
            }
            for t in priced.tiers
        ]
    return details


def _charge_terms(terms: SubscriptionTerms, usage: ChargeUsage) -> ChargeTerms:
    charge = terms.charges.get(usage.charge_id)
    if charge is None:
        raise PoisonMessage(
            "charge_not_found",
            f"charge {usage.charge_id} of subscription {terms.subscription_id} is not in the "
            "catalog",
        )
    return charge


def _charge_fee(
    terms: SubscriptionTerms, usage: ChargeUsage, period: BillingPeriod, currency: str
) -> PricedFee | None:
    charge = _charge_terms(terms, usage)
    if not charge.invoiceable:
        return None
    # Only a sum's state prices differently from its units (per-event amounts): the other
    # snapshots are not rebuilt just to be ignored.
    snapshot = usage.aggregation
    state = _restore(snapshot) if snapshot.get("type") == _SUM else None
    priced = _price(charge, usage.units, usage.events_count, state)
    return _usage_fee(terms, charge, usage, period, currency, priced)


def _usage_fee(
    terms: SubscriptionTerms,
    charge: ChargeTerms,
    usage: ChargeUsage,
    period: BillingPeriod,
    currency: str,
    priced: ChargeAmount,
    adjusts: tuple[Decimal, int] | None = None,
) -> PricedFee:
    """The charge fee of `usage` in `period`, priced as `priced` says; with `adjusts`
    (the units added and the cents already invoiced for the period), the adjustment fee:
    what `priced` costs more than those cents, never less than nothing."""
    amount_cents, precise_amount, units = priced.amount_cents(currency), priced.amount, usage.units
    if adjusts is not None:
        units, before_cents = adjusts
        before = Decimal(before_cents).scaleb(-minor_units(currency))
        amount_cents = max(0, amount_cents - before_cents)
        precise_amount = max(Decimal(0), precise_amount - before)
    return PricedFee(  # by position, each field named (billing.value)
        FeeKind.CHARGE,  # kind
        charge.metric_code,  # item_code
        charge.metric_name,  # item_name
        charge.invoice_display_name,  # invoice_display_name
        amount_cents,  # amount_cents
        precise_amount,  # precise_amount
        units,  # units
        usage.events_count,  # events_count
        period.start,  # from_date
        period.end,  # to_date
        False,  # pay_in_advance
        True,  # invoiceable
        charge.charge_id,  # charge_id
        charge.billable_metric_id,  # billable_metric_id
        period.start,  # usage_period_start
        adjusts is not None,  # is_adjustment
        usage.aggregation,  # aggregation
        amount_details(charge.charge_model, priced),  # amount_details
        charge.taxes or terms.taxes,  # taxes
    )


def _adjustment_fee(
    terms: SubscriptionTerms,
    usage: ChargeUsage,
    period: BillingPeriod,
    invoiced: Sequence[Mapping[str, Any]],
    currency: str,
) -> PricedFee | None:
    charge = _charge_terms(terms, usage)
    if not charge.invoiceable or usage.events_count == 0:
        return None
    late = _restore(usage.aggregation)
    base: Aggregation | None = None
    for snapshot in invoiced:
        state = _restore(snapshot)
        if state is None:
            continue
        try:
            base = state if base is None else base.merge(state)
        except (ValueError, TypeError):
            base = None
            break
    before_cents = 0
    units = usage.units
    if base is not None and late is not None:
        try:
            combined = base.merge(late)
        except (ValueError, TypeError):
            combined = None
        if combined is not None:
            before = _price(charge, base.result(), base.events_count, base)
            after = _price(charge, combined.result(), combined.events_count, combined)
            before_cents = before.amount_cents(currency)
            priced = after
            units = combined.result() - base.result()
        else:
            priced = _price(charge, usage.units, usage.events_count, late)
    else:
        priced = _price(charge, usage.units, usage.events_count, late)
    return _usage_fee(terms, charge, usage, period, currency, priced, (units, before_cents))


def _subscription_fee(
    terms: SubscriptionTerms, period: BillingPeriod, currency: str, advance: bool
) -> PricedFee:
    calendar = (terms.subscription_at, terms.billing_time, terms.timezone)
    return _plan_fee(
        terms.plan, period, currency, advance, terms.taxes, calendar, terms.organization_timezone
    )


# The subscription fee is a pure function of these terms, and the subscriptions of a plan
# closing together mostly share them (calendar billing, one timezone): one fee (frozen) for
# all of them.
@lru_cache(maxsize=4096)
def _plan_fee(
    plan: PlanTerms,
    period: BillingPeriod,
    currency: str,
    advance: bool,
    taxes: tuple[TaxTerms, ...],
    calendar: tuple[datetime, str, str | None],
    organization_timezone: str | None,
) -> PricedFee:
    subscription_at, billing_time, timezone = calendar
    tz = resolve_timezone(timezone, organization_timezone)
    cents = plan_fee_cents(
        plan.amount_cents, period, subscription_at, plan.interval, billing_time, tz
    )
    if cents is None:
        # The aggregator closed the period on other boundaries than today's catalog gives
        # (the customer's timezone changed since): bill it as the whole period it was.
        cents = plan.amount_cents
    return PricedFee(
        kind=FeeKind.SUBSCRIPTION,
        item_code=plan.code,
        item_name=plan.name,
        invoice_display_name=plan.invoice_display_name,
        amount_cents=cents,
        precise_amount=Decimal(cents).scaleb(-minor_units(currency)),
        units=Decimal(1),
        events_count=None,
        from_date=period.start,
        to_date=period.end,
        pay_in_advance=advance,
        taxes=taxes,
    )


@lru_cache(maxsize=1024)  # a round's subscriptions mostly share these
def _calendar(
    timezone: str | None, organization_timezone: str | None, interval: str, billing_time: str
) -> tuple[ZoneInfo, PlanInterval, BillingTime]:
    """The catalog's timezone, plan interval and billing time as billing's types; raises
    BillingError or ValueError (not cached) when the catalog holds what they refuse."""
    tz = resolve_timezone(timezone, organization_timezone)
    return tz, PlanInterval(interval), BillingTime(billing_time)


def price_period(
    closed: PeriodClosed,
    terms: SubscriptionTerms,
    invoiced: InvoicedUsage,
    *,
    now: datetime | None = None,
) -> PricedInvoice:
    """The invoice of one closed period; raises PoisonMessage if it cannot be priced."""
    currency = closed.currency or terms.plan.amount_currency
    try:
        minor_units(currency)
        tz, interval, billing_time = _calendar(
            terms.timezone, terms.organization_timezone, terms.plan.interval, terms.billing_time
        )
    except (BillingError, ValueError) as exc:
        raise PoisonMessage("invalid_catalog", str(exc)) from exc
    closing = BillingPeriod(closed.period_start, closed.period_end)
    plan = terms.plan
    fees: list[PricedFee] = []
    reason = "subscription_terminating" if closed.terminated else "subscription_periodic"
    if plan.pay_in_advance:
        if closing.start <= terms.subscription_at:
            # The first period's advance fee: nothing billed it when the subscription began.
            fees.append(_subscription_fee(terms, closing, currency, True))
            reason = "subscription_starting"
        if not closed.terminated:
            following = subscription_fee_period(
                closing,
                pay_in_advance=True,
                subscription_at=terms.subscription_at,
                interval=interval,
                billing_time=billing_time,
                tz=tz,
            )
            fees.append(_subscription_fee(terms, following, currency, True))
    else:
        fees.append(_subscription_fee(terms, closing, currency, False))
    for usage in closed.charges:
        fee = _charge_fee(terms, usage, closing, currency)
        if fee is not None:
            fees.append(fee)
    for adjustment in closed.adjustments:
        late_period = BillingPeriod(adjustment.period_start, adjustment.period_end)
        for usage in adjustment.charges:
            previous = invoiced.get((usage.charge_id, late_period.start), ())
            fee = _adjustment_fee(terms, usage, late_period, previous, currency)
            if fee is not None:
                fees.append(fee)
    grace = terms.invoice_grace_period_days
    grace_until = closing.end + timedelta(days=grace) if grace > 0 else None
    instant = now or datetime.now(UTC)
    draft = grace_until is not None and grace_until > instant
    wallets = [] if draft else [w for w in terms.wallets if w.currency == currency]
    notes = () if draft else terms.credit_notes
    credit_cents = available_cents(notes, currency)
    try:
        totals, coupon_uses = invoice_totals(
            currency, fees, terms.coupons, wallets, credit_notes_cents=credit_cents
        )
    except BillingError as exc:
        raise _refused(exc) from exc
    # Most customers have no wallet and no credit note: nothing to split between them.
    wallet_uses: tuple[tuple[WalletTerms, int], ...] = ()
    note_uses: tuple[tuple[CreditNoteTerms, int], ...] = ()
    if notes:
        note_uses = split_credit(totals.credit_notes_amount_cents, notes, currency)
    if wallets:
        paid = consume_prepaid(
            totals.prepaid_credit_amount_cents, [w.balance_cents for w in wallets]
        )
        wallet_uses = tuple((w, cents) for w, cents in zip(wallets, paid, strict=True) if cents)
    subscription_fees = [f for f in fees if f.kind is FeeKind.SUBSCRIPTION]
    billed = subscription_fees[-1] if subscription_fees else None
    return PricedInvoice(  # by position, each field named (billing.value)
        closed.period_key,  # period_key
        currency,  # currency
        closing.end.astimezone(tz).date(),  # issuing_date
        "draft" if draft else "finalized",  # status
        grace_until if draft else None,  # grace_until
        reason,  # invoicing_reason
        closing.start if billed is None else billed.from_date,  # subscription_from
        closing.end if billed is None else billed.to_date,  # subscription_to
        tuple(fees),  # fees
        totals,  # totals
        coupon_uses,  # coupon_uses
        wallet_uses,  # wallet_uses
        note_uses,  # credit_note_uses
    )


@dataclass(frozen=True, slots=True)
class RefreshedDraft:
    """A draft's fees and totals once late usage of its period is merged in."""

    fees: tuple[PricedFee, ...]
    totals: InvoiceTotals
    coupon_uses: tuple[tuple[CustomerCoupon, CouponUse], ...]
    # Indexes (in `fees`) of the charge fees priced again.
    changed: tuple[int, ...]


def refresh_draft(
    terms: SubscriptionTerms,
    currency: str,
    fees: Sequence[PricedFee],
    late: LateUsage,
    coupons: Sequence[CustomerCoupon],
) -> RefreshedDraft:
    """The draft with `late` merged in: each charge fee of the late period (not an
    adjustment) whose charge had late events is priced on its aggregation state merged with
    the late one; then the totals, coupons (in the states they had before this draft) and
    taxes are computed again as at creation. A charge without a fee on the draft (not
    invoiceable) is skipped, as the adjustment pricing skips it."""
    refreshed = list(fees)
    changed: list[int] = []
    for usage in late.charges:
        if usage.events_count == 0:
            continue
        for i, fee in enumerate(refreshed):
            if (
                fee.kind is FeeKind.CHARGE
                and not fee.is_adjustment
                and fee.charge_id == usage.charge_id
                and fee.usage_period_start == late.period_start
            ):
                refreshed[i] = _merged_charge_fee(terms, fee, usage, currency)
                changed.append(i)
                break
    try:
        totals, coupon_uses = invoice_totals(currency, refreshed, coupons)
    except BillingError as exc:
        raise _refused(exc) from exc
    return RefreshedDraft(tuple(refreshed), totals, coupon_uses, tuple(changed))


def _merged_charge_fee(
    terms: SubscriptionTerms, fee: PricedFee, late: ChargeUsage, currency: str
) -> PricedFee:
    base = None if fee.aggregation is None else _restore(fee.aggregation)
    extra = _restore(late.aggregation)
    if base is None or extra is None:
        raise PoisonMessage(
            "unmergeable_usage", f"charge {late.charge_id}: an aggregation state is unreadable"
        )
    try:
        merged = base.merge(extra)
    except (ValueError, TypeError) as exc:
        raise PoisonMessage("unmergeable_usage", f"charge {late.charge_id}: {exc}") from exc
    usage = replace(
        late,
        units=merged.result(),
        events_count=merged.events_count,
        aggregation=merged.to_dict(),
    )
    priced = _charge_fee(terms, usage, BillingPeriod(fee.from_date, fee.to_date), currency)
    # The fee keeps the taxes the draft applied to it (its invoice's snapshot).
    return fee if priced is None else replace(priced, taxes=fee.taxes)


def _refused(exc: BillingError) -> PoisonMessage:
    """Input `invoice_totals`' arithmetic refuses is a poison message."""
    return PoisonMessage("invalid_invoice_input", str(exc))
