"""Invoice arithmetic in Lago's order: fees, coupons, taxes, credit notes, prepaid credits.

Every input and output amount is in integer minor units (Lago's `*_amount_cents`). Fees
arrive already rounded (each fee rounds its precise amount once, half up). Coupons apply
in the order given, each on what the previous ones left, never below zero.

Taxes, as Lago computes them (invoice version 4): each fee bears the coupons in proportion
to its amount (`precise_coupons_amount_cents`, kept precise); its taxable base is its
amount minus that share. A fee's own `taxes_amount_cents` is its base times the sum of its
rates, rounded half up. The invoice lists its taxes (`applied_taxes`): each tax's amount
is the sum of the bases it applies to times its rate, rounded half up to the minor unit
(Ruby's `round`, half away from zero, the same for these non-negative amounts). The
invoice's `taxes_amount_cents` is the sum of those taxes' precise amounts, rounded once
(Lago's `Invoices::ApplyTaxesService`), so it can differ by a cent from the sum of the
listed taxes, and from the sum of the fees' rounded taxes, exactly as in Lago. Credit
notes, then prepaid credits, pay what remains.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Unpack
from zoneinfo import ZoneInfo

from billing.charge_models.charge_amount import ChargeAmount
from billing.errors import InvalidInvoiceInput
from billing.money import minor_units, round_cents
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    SubscriptionCalendar,
    full_period_containing,
    next_period,
    pro_rata_fraction,
)
from billing.value import value

_HUNDRED = Decimal(100)


class FeeKind(enum.StrEnum):
    """What a fee bills (Lago's fee_type values used here)."""

    SUBSCRIPTION = "subscription"
    CHARGE = "charge"
    ADD_ON = "add_on"


class CouponType(enum.StrEnum):
    FIXED_AMOUNT = "fixed_amount"
    PERCENTAGE = "percentage"


class CouponFrequency(enum.StrEnum):
    ONCE = "once"
    RECURRING = "recurring"
    FOREVER = "forever"


@value
class Fee:
    """One invoice line, already rounded to minor units, with the tax rates (percent) on it."""

    kind: FeeKind
    amount_cents: int
    tax_rates: tuple[Decimal, ...] = ()
    code: str = ""
    # The codes of the taxes in `tax_rates`, position for position; a tax without a code
    # is told apart by its rate.
    tax_codes: tuple[str, ...] = ()

    def taxes(self) -> tuple[tuple[str, Decimal], ...]:
        return tuple(
            (self.tax_codes[i] if i < len(self.tax_codes) else f"rate:{rate}", rate)
            for i, rate in enumerate(self.tax_rates)
        )


@dataclass(frozen=True, slots=True)
class AppliedCoupon:
    """A coupon applied to the customer, with what is left of it before this invoice.

    Fixed coupons carry `amount_cents`; a `once` fixed coupon also carries what remains of
    it (`amount_cents_remaining`, None meaning untouched), carried over invoice to invoice.
    A `recurring` coupon carries `frequency_duration_remaining` periods; its unused value
    in a period is lost. Percentage coupons carry `percentage_rate` (percent).
    """

    coupon_type: CouponType
    frequency: CouponFrequency
    amount_cents: int | None = None
    amount_currency: str | None = None
    percentage_rate: Decimal | None = None
    frequency_duration_remaining: int | None = None
    amount_cents_remaining: int | None = None
    code: str = ""
    terminated: bool = False

    def _value_left(self) -> int:
        assert self.amount_cents is not None
        if self.frequency is CouponFrequency.ONCE and self.amount_cents_remaining is not None:
            return self.amount_cents_remaining
        return self.amount_cents


@value
class CouponUse:
    """What one coupon took off this invoice, and its state after it."""

    code: str
    amount_cents: int
    after: AppliedCoupon


@value
class FeeTaxes:
    """What one fee bears: its share of the coupons and its taxes (both in precise cents)."""

    precise_coupons_cents: Decimal
    taxes_precise_cents: Decimal
    taxes_cents: int
    taxes_rate: Decimal


@value
class AppliedTax:
    """One tax over the whole invoice: the bases it applies to and its rounded amount."""

    code: str
    rate: Decimal
    taxable_base_cents: Decimal
    amount_cents: int


@value
class InvoiceTotals:
    """An invoice's totals with Lago's field names, all in minor units."""

    currency: str
    fees_amount_cents: int
    coupons_amount_cents: int
    sub_total_excluding_taxes_amount_cents: int
    taxes_amount_cents: int
    sub_total_including_taxes_amount_cents: int
    credit_notes_amount_cents: int
    prepaid_credit_amount_cents: int
    total_amount_cents: int
    coupon_uses: tuple[CouponUse, ...] = ()
    fee_taxes: tuple[FeeTaxes, ...] = ()
    applied_taxes: tuple[AppliedTax, ...] = ()


_ZERO = Decimal(0)
# The share and taxes of a fee with neither coupons nor taxes (one object, it is frozen).
_UNTAXED = FeeTaxes(_ZERO, _ZERO, 0, _ZERO)


def _non_negative(name: str, cents: int) -> int:
    if isinstance(cents, bool) or not isinstance(cents, int) or cents < 0:
        raise InvalidInvoiceInput(f"{name} must be a non-negative integer of cents: {cents!r}")
    return cents


def subscription_fee_period(
    closing: BillingPeriod,
    *,
    pay_in_advance: bool,
    **calendar: Unpack[SubscriptionCalendar],
) -> BillingPeriod:
    """The period whose subscription fee the invoice closing `closing` bills: that period
    itself when paid in arrears, the next one when paid in advance. (The very first advance
    fee, for the first period, is billed when the subscription starts.)"""
    if not pay_in_advance:
        return closing
    return next_period(closing, **calendar)


def subscription_fee_cents(
    plan_amount_cents: int,
    *,
    period: BillingPeriod,
    full_period: BillingPeriod,
    tz: ZoneInfo,
) -> int:
    """The plan's price for the period, pro-rated by local days when it is partial (a
    calendar subscription's first period, a terminated one's last), rounded half up once.

    An anniversary subscription's first period covers all its days, so it pays in full.
    """
    _non_negative("plan_amount_cents", plan_amount_cents)
    fraction = pro_rata_fraction(period, full_period, tz)
    return round_cents(Decimal(plan_amount_cents) * fraction.numerator / fraction.denominator)


def plan_fee_cents(
    plan_amount_cents: int,
    period: BillingPeriod,
    subscription_at: datetime,
    interval: str,
    billing_time: str,
    tz: ZoneInfo,
) -> int | None:
    """`subscription_fee_cents` of `period` against the full plan period containing its
    start (from the subscription's terms as the catalog holds them now); None when
    `period` does not lie within that full period (it was drawn on other boundaries, as
    before the customer's timezone changed)."""
    full = full_period_containing(
        period.start,
        subscription_at=subscription_at,
        interval=PlanInterval(interval),
        billing_time=BillingTime(billing_time),
        tz=tz,
    )
    if period.start < full.start or period.end > full.end:
        return None
    return subscription_fee_cents(plan_amount_cents, period=period, full_period=full, tz=tz)


def charge_fee_cents(charge: ChargeAmount, currency: str) -> int:
    """A charge's fee in minor units: its precise amount rounded half up once."""
    return charge.amount_cents(currency)


def _apply_coupon(coupon: AppliedCoupon, base: int, currency: str) -> CouponUse:
    if coupon.coupon_type is CouponType.FIXED_AMOUNT:
        if coupon.amount_cents is None:
            raise InvalidInvoiceInput(f"fixed_amount coupon {coupon.code!r} has no amount_cents")
        _non_negative(f"coupon {coupon.code!r} amount_cents", coupon.amount_cents)
        if coupon.amount_currency is not None and coupon.amount_currency != currency:
            raise InvalidInvoiceInput(
                f"coupon {coupon.code!r} is in {coupon.amount_currency}, the invoice in {currency}"
            )
        deducted = min(coupon._value_left(), base)
    else:
        rate = coupon.percentage_rate
        if rate is None or not rate.is_finite() or not 0 <= rate <= _HUNDRED:
            raise InvalidInvoiceInput(
                f"percentage coupon {coupon.code!r} needs a percentage_rate in [0, 100]"
            )
        deducted = min(round_cents(Decimal(base) * rate / _HUNDRED), base)
    return CouponUse(coupon.code, deducted, _coupon_after(coupon, deducted))


def _coupon_after(coupon: AppliedCoupon, deducted: int) -> AppliedCoupon:
    if coupon.frequency is CouponFrequency.FOREVER:
        return coupon
    if coupon.frequency is CouponFrequency.RECURRING:
        left = (coupon.frequency_duration_remaining or 0) - 1
        return replace(coupon, frequency_duration_remaining=left, terminated=left <= 0)
    if coupon.coupon_type is CouponType.PERCENTAGE:
        return replace(coupon, terminated=True)
    left = coupon._value_left() - deducted
    return replace(coupon, amount_cents_remaining=left, terminated=left <= 0)


def _is_usable(coupon: AppliedCoupon) -> bool:
    if coupon.terminated:
        return False
    if coupon.frequency is CouponFrequency.RECURRING:
        return (coupon.frequency_duration_remaining or 0) > 0
    return True


def compute_invoice(
    currency: str,
    fees: Sequence[Fee],
    *,
    coupons: Sequence[AppliedCoupon] = (),
    credit_notes_available_cents: int = 0,
    wallet_balance_cents: int = 0,
) -> InvoiceTotals:
    """The invoice's totals, and what each coupon took and has left.

    A coupon only counts as used (a recurring period spent, a once coupon consumed) on an
    invoice it actually reduced; on an invoice already at zero it waits for the next one.
    """
    minor_units(currency)  # refuses an unknown currency before any arithmetic
    for fee in fees:
        cents = fee.amount_cents
        if type(cents) is not int or cents < 0:
            _non_negative(f"fee {fee.code!r} amount_cents", cents)
        if fee.tax_rates and any(not rate.is_finite() or rate < 0 for rate in fee.tax_rates):
            raise InvalidInvoiceInput(f"fee {fee.code!r} has a negative or non-finite tax rate")
    _non_negative("credit_notes_available_cents", credit_notes_available_cents)
    _non_negative("wallet_balance_cents", wallet_balance_cents)

    fees_cents = sum(fee.amount_cents for fee in fees)
    remaining = fees_cents
    uses: list[CouponUse] = []
    for coupon in coupons:
        if remaining == 0 or not _is_usable(coupon):
            continue
        use = _apply_coupon(coupon, remaining, currency)
        if use.amount_cents == 0:
            continue
        uses.append(use)
        remaining -= use.amount_cents
    coupons_cents = fees_cents - remaining

    fee_taxes: list[FeeTaxes] = []
    bases: dict[tuple[str, Decimal], Decimal] = {}
    for fee in fees:
        # Each fee bears the coupons in proportion to its amount, so a coupon lowers the
        # tax of every fee it discounts, as Lago spreads it.
        if not coupons_cents:
            share = _ZERO  # what the proportion gives without coupons, exactly
        else:
            share = Decimal(coupons_cents) * fee.amount_cents / fees_cents
        if not fee.tax_rates:
            # No tax: nothing to add up (the sums below give these same zeros).
            fee_taxes.append(_UNTAXED if share is _ZERO else FeeTaxes(share, _ZERO, 0, _ZERO))
            continue
        base = fee.amount_cents - share
        precise = sum((base * rate / _HUNDRED for rate in fee.tax_rates), Decimal(0))
        fee_taxes.append(
            FeeTaxes(share, precise, round_cents(precise), sum(fee.tax_rates, Decimal(0)))
        )
        for key in fee.taxes():
            bases[key] = bases.get(key, Decimal(0)) + base
    applied = tuple(
        AppliedTax(code, rate, base, round_cents(base * rate / _HUNDRED))
        for (code, rate), base in sorted(bases.items())
    )
    # Lago sums the taxes' precise amounts and rounds that sum once; each applied tax
    # shows its own rounded amount, so they may differ from the total by a cent.
    taxes_cents = (
        round_cents(
            sum((tax.taxable_base_cents * tax.rate / _HUNDRED for tax in applied), Decimal(0))
        )
        if applied
        else 0
    )

    sub_total_excluding = fees_cents - coupons_cents
    sub_total_including = sub_total_excluding + taxes_cents
    credit_notes_cents = min(credit_notes_available_cents, sub_total_including)
    prepaid_cents = min(wallet_balance_cents, sub_total_including - credit_notes_cents)
    return InvoiceTotals(  # by position, each field named (billing.value)
        currency,  # currency
        fees_cents,  # fees_amount_cents
        coupons_cents,  # coupons_amount_cents
        sub_total_excluding,  # sub_total_excluding_taxes_amount_cents
        taxes_cents,  # taxes_amount_cents
        sub_total_including,  # sub_total_including_taxes_amount_cents
        credit_notes_cents,  # credit_notes_amount_cents
        prepaid_cents,  # prepaid_credit_amount_cents
        sub_total_including - credit_notes_cents - prepaid_cents,  # total_amount_cents
        tuple(uses),  # coupon_uses
        tuple(fee_taxes),  # fee_taxes
        applied,  # applied_taxes
    )
