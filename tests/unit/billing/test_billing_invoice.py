"""Invoice totals in Lago's order: fees, coupons, taxes, credit notes, prepaid credits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.charge_models import CHARGE_MODELS
from billing.errors import InvalidInvoiceInput, UnknownCurrency
from billing.invoice import (
    AppliedCoupon,
    CouponFrequency,
    CouponType,
    Fee,
    FeeKind,
    charge_fee_cents,
    compute_invoice,
    subscription_fee_cents,
    subscription_fee_period,
)
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    first_period,
    full_period_containing,
)

VAT_20 = (Decimal(20),)


def sub(cents: int, rates: tuple[Decimal, ...] = VAT_20) -> Fee:
    return Fee(FeeKind.SUBSCRIPTION, cents, rates, "plan")


def usage(cents: int, rates: tuple[Decimal, ...] = VAT_20) -> Fee:
    return Fee(FeeKind.CHARGE, cents, rates, "api_calls")


def fixed(
    cents: int, frequency: CouponFrequency = CouponFrequency.ONCE, **extra: object
) -> AppliedCoupon:
    return AppliedCoupon(
        CouponType.FIXED_AMOUNT, frequency, amount_cents=cents, code=f"fixed{cents}", **extra
    )  # type: ignore[arg-type]


def percent(rate: str, frequency: CouponFrequency = CouponFrequency.FOREVER) -> AppliedCoupon:
    return AppliedCoupon(
        CouponType.PERCENTAGE, frequency, percentage_rate=Decimal(rate), code=f"pct{rate}"
    )


# (fees, coupons, credit notes available, wallet balance,
#  (fees, coupons, sub excl., taxes, sub incl., credit notes, prepaid, total))
INVOICES = [
    ([sub(10000), usage(5000)], [], 0, 0, (15000, 0, 15000, 3000, 18000, 0, 0, 18000)),
    ([sub(10000), usage(5000)], [fixed(2000)], 0, 1000,
     (15000, 2000, 13000, 2600, 15600, 0, 1000, 14600)),
    ([sub(10000)], [fixed(20000)], 0, 0, (10000, 10000, 0, 0, 0, 0, 0, 0)),
    ([sub(10000)], [percent("10"), fixed(500)], 0, 0,
     (10000, 1500, 8500, 1700, 10200, 0, 0, 10200)),
    ([sub(10000)], [fixed(500), percent("10")], 0, 0,
     (10000, 1450, 8550, 1710, 10260, 0, 0, 10260)),
    ([sub(10000)], [percent("100"), fixed(500)], 0, 0, (10000, 10000, 0, 0, 0, 0, 0, 0)),
    ([sub(10000)], [], 3000, 100000, (10000, 0, 10000, 2000, 12000, 3000, 9000, 0)),
    ([sub(10000)], [], 50000, 100000, (10000, 0, 10000, 2000, 12000, 12000, 0, 0)),
    ([sub(333, (Decimal(10),))], [], 0, 0, (333, 0, 333, 33, 366, 0, 0, 366)),
    ([sub(335, (Decimal(10),))], [], 0, 0, (335, 0, 335, 34, 369, 0, 0, 369)),
    # Mixed rates: the coupon is spread over both fees, so it lowers the taxed one's base.
    ([sub(10000), usage(10000, ())], [fixed(5000)], 0, 0,
     (20000, 5000, 15000, 1500, 16500, 0, 0, 16500)),
    ([sub(10000, (Decimal(10), Decimal("5.5")))], [], 0, 0,
     (10000, 0, 10000, 1550, 11550, 0, 0, 11550)),
    ([], [fixed(500)], 0, 1000, (0, 0, 0, 0, 0, 0, 0, 0)),
]  # fmt: skip


@pytest.mark.parametrize(("fees", "coupons", "credit_notes", "wallet", "totals"), INVOICES)
def test_invoice_totals(
    fees: list[Fee],
    coupons: list[AppliedCoupon],
    credit_notes: int,
    wallet: int,
    totals: tuple[int, ...],
) -> None:
    invoice = compute_invoice(
        "EUR",
        fees,
        coupons=coupons,
        credit_notes_available_cents=credit_notes,
        wallet_balance_cents=wallet,
    )
    assert (
        invoice.fees_amount_cents,
        invoice.coupons_amount_cents,
        invoice.sub_total_excluding_taxes_amount_cents,
        invoice.taxes_amount_cents,
        invoice.sub_total_including_taxes_amount_cents,
        invoice.credit_notes_amount_cents,
        invoice.prepaid_credit_amount_cents,
        invoice.total_amount_cents,
    ) == totals


def test_a_once_fixed_coupon_carries_its_remainder_to_the_next_invoice() -> None:
    first = compute_invoice("USD", [sub(3000)], coupons=[fixed(5000)])
    (use,) = first.coupon_uses
    assert use.amount_cents == 3000
    assert use.after.amount_cents_remaining == 2000 and not use.after.terminated
    second = compute_invoice("USD", [sub(3000)], coupons=[use.after])
    (use,) = second.coupon_uses
    assert use.amount_cents == 2000 and use.after.terminated
    third = compute_invoice("USD", [sub(3000)], coupons=[use.after])
    assert third.coupons_amount_cents == 0


def test_a_recurring_coupon_loses_what_a_period_did_not_use() -> None:
    coupon = fixed(5000, CouponFrequency.RECURRING, frequency_duration_remaining=2)
    first = compute_invoice("USD", [sub(3000)], coupons=[coupon])
    assert first.coupons_amount_cents == 3000
    after = first.coupon_uses[0].after
    assert after.frequency_duration_remaining == 1 and after.amount_cents_remaining is None
    second = compute_invoice("USD", [sub(9000)], coupons=[after])
    assert second.coupons_amount_cents == 5000
    assert second.coupon_uses[0].after.terminated
    third = compute_invoice("USD", [sub(9000)], coupons=[second.coupon_uses[0].after])
    assert third.coupons_amount_cents == 0


def test_a_forever_coupon_never_runs_out() -> None:
    coupon = percent("10")
    for _ in range(3):
        invoice = compute_invoice("USD", [sub(1000)], coupons=[coupon])
        assert invoice.coupons_amount_cents == 100
        coupon = invoice.coupon_uses[0].after
    assert not coupon.terminated


def test_a_coupon_waits_while_the_invoice_is_zero() -> None:
    coupon = fixed(500, CouponFrequency.RECURRING, frequency_duration_remaining=1)
    invoice = compute_invoice("USD", [sub(0)], coupons=[coupon])
    assert invoice.coupon_uses == ()


@pytest.mark.parametrize(
    ("fees", "coupons", "message"),
    [
        ([sub(-1)], [], "non-negative"),
        ([sub(100, (Decimal(-5),))], [], "tax rate"),
        ([sub(100)], [fixed(100, amount_currency="USD")], "is in USD"),
        ([sub(100)], [percent("150")], "percentage_rate"),
        ([sub(100)], [AppliedCoupon(CouponType.FIXED_AMOUNT, CouponFrequency.ONCE)], "amount"),
    ],
)
def test_inconsistent_inputs_are_refused(
    fees: list[Fee], coupons: list[AppliedCoupon], message: str
) -> None:
    with pytest.raises(InvalidInvoiceInput, match=message):
        compute_invoice("EUR", fees, coupons=coupons)


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        compute_invoice("ZZZ", [sub(100)])


# (zone, billing time, subscription start (UTC), plan price in cents, first fee in cents)
SUBSCRIPTION_FEES = [
    ("Asia/Tokyo", BillingTime.CALENDAR, "2026-01-15T06:00", 3100, 1700),
    ("UTC", BillingTime.CALENDAR, "2026-01-15T06:00", 1000, 548),
    ("UTC", BillingTime.CALENDAR, "2026-01-01T00:00", 1000, 1000),
    ("UTC", BillingTime.ANNIVERSARY, "2026-01-15T06:00", 1000, 1000),
    ("America/New_York", BillingTime.CALENDAR, "2026-02-28T06:00", 2800, 100),
]


@pytest.mark.parametrize(("zone", "billing_time", "started", "price", "fee"), SUBSCRIPTION_FEES)
def test_first_subscription_fee_is_pro_rated_by_days(
    zone: str, billing_time: BillingTime, started: str, price: int, fee: int
) -> None:
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(started).replace(tzinfo=UTC)
    terms = {"interval": PlanInterval.MONTHLY, "billing_time": billing_time, "tz": tz}
    period = first_period(subscription_at=start, **terms)  # type: ignore[arg-type]
    full = full_period_containing(start, subscription_at=start, **terms)  # type: ignore[arg-type]
    assert subscription_fee_cents(price, period=period, full_period=full, tz=tz) == fee


def test_advance_fees_bill_the_next_period_and_arrears_the_closing_one() -> None:
    tz = ZoneInfo("UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    january = BillingPeriod(start, datetime(2026, 2, 1, tzinfo=UTC))
    terms = {
        "subscription_at": start,
        "interval": PlanInterval.MONTHLY,
        "billing_time": BillingTime.CALENDAR,
        "tz": tz,
    }
    assert subscription_fee_period(january, pay_in_advance=False, **terms) == january  # type: ignore[arg-type]
    advance = subscription_fee_period(january, pay_in_advance=True, **terms)  # type: ignore[arg-type]
    assert advance == BillingPeriod(
        datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    )


def test_a_charge_fee_rounds_its_precise_amount_once() -> None:
    priced = CHARGE_MODELS["standard"].price(Decimal(3), {"amount": "0.0049"}, events_count=3)
    assert priced.amount == Decimal("0.0147")
    assert charge_fee_cents(priced, "USD") == 1
    assert charge_fee_cents(priced, "KWD") == 15
