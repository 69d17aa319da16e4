"""Taxes per tax and per fee as Lago rounds them, and prepaid credits through wallets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.errors import InvalidInvoiceInput
from billing.invoice import (
    AppliedCoupon,
    CouponFrequency,
    CouponType,
    Fee,
    FeeKind,
    compute_invoice,
)
from billing.wallet import cents_to_credits, consume_prepaid, credits_to_cents, granted_first

TEN = Decimal(10)


def fee(cents: int, *taxes: tuple[str, str]) -> Fee:
    return Fee(
        FeeKind.CHARGE,
        cents,
        tuple(Decimal(rate) for _, rate in taxes),
        "calls",
        tuple(code for code, _ in taxes),
    )


def test_each_tax_is_listed_rounded_and_the_total_rounds_their_precise_sum() -> None:
    # Two taxes of 10 % on 3.33: each is 33.3 cents, listed as 33; the invoice's taxes are
    # 66.6 -> 67 (Lago rounds the precise sum once, not the sum of the rounded taxes).
    invoice = compute_invoice("EUR", [fee(333, ("a", "10"), ("b", "10"))])
    assert [(t.code, t.amount_cents) for t in invoice.applied_taxes] == [("a", 33), ("b", 33)]
    assert invoice.taxes_amount_cents == 67
    assert invoice.sub_total_including_taxes_amount_cents == 400


def test_a_fee_rounds_its_own_taxes_but_the_invoice_rounds_per_tax() -> None:
    # Three fees of 5 cents at 10 %: each fee's tax is 0.5 -> 1 on the fee, while the
    # invoice's tax is 15 x 10 % = 1.5 -> 2 (Lago shows both).
    invoice = compute_invoice("EUR", [fee(5, ("vat", "10"))] * 3)
    assert [t.taxes_cents for t in invoice.fee_taxes] == [1, 1, 1]
    assert [t.taxes_precise_cents for t in invoice.fee_taxes] == [Decimal("0.5")] * 3
    assert invoice.taxes_amount_cents == 2


def test_taxes_apply_after_coupons_spread_pro_rata() -> None:
    # 30.00 of fees, a 10.00 coupon: the 20.00 fee bears 6.6667, the 10.00 fee 3.3333.
    # VAT 20 % only on the first: (2000 - 666.67) x 0.20 = 266.67 -> 267.
    coupon = AppliedCoupon(
        CouponType.FIXED_AMOUNT, CouponFrequency.ONCE, amount_cents=1000, code="c"
    )
    invoice = compute_invoice("EUR", [fee(2000, ("vat", "20")), fee(1000)], coupons=[coupon])
    assert invoice.coupons_amount_cents == 1000
    assert invoice.fee_taxes[0].precise_coupons_cents.quantize(Decimal("0.0001")) == Decimal(
        "666.6667"
    )
    assert invoice.taxes_amount_cents == 267
    assert invoice.fee_taxes[0].taxes_cents == 267
    assert invoice.total_amount_cents == 2000 + 267


@pytest.mark.parametrize(
    ("credits", "rate", "currency", "cents"),
    [
        ("10", "1.5", "USD", 1500),
        ("0.333", "1", "EUR", 33),
        ("0.335", "1", "EUR", 34),  # half up
        ("100", "0.01", "JPY", 1),
        ("2.5", "1", "KWD", 2500),
    ],
)
def test_credits_convert_through_the_wallet_rate(
    credits: str, rate: str, currency: str, cents: int
) -> None:
    assert credits_to_cents(Decimal(credits), Decimal(rate), currency) == cents


def test_cents_convert_back_to_credits() -> None:
    assert cents_to_credits(1500, Decimal("1.5"), "USD") == Decimal("10.0")
    assert str(cents_to_credits(1000, Decimal("3"), "USD")) == "3.33333"
    assert str(cents_to_credits(0, TEN, "EUR")) == "0.0"


def test_a_wallet_spends_its_granted_credits_first() -> None:
    assert granted_first(500, 300) == (300, 200)
    assert granted_first(200, 300) == (200, 0)
    assert granted_first(200, 0) == (0, 200)
    with pytest.raises(InvalidInvoiceInput):
        granted_first(-1, 0)


def test_wallets_pay_in_order_until_nothing_is_due() -> None:
    assert consume_prepaid(1000, [300, 500, 900]) == (300, 500, 200)
    assert consume_prepaid(100, [0, 500]) == (0, 100)
    assert consume_prepaid(0, [500]) == (0,)
    assert consume_prepaid(700, []) == ()


@pytest.mark.parametrize(
    "call",
    [
        lambda: credits_to_cents(Decimal(-1), TEN, "EUR"),
        lambda: credits_to_cents(Decimal(1), Decimal(0), "EUR"),
        lambda: credits_to_cents(Decimal("NaN"), TEN, "EUR"),
        lambda: consume_prepaid(-1, [1]),
        lambda: consume_prepaid(1, [-1]),
    ],
)
def test_bad_wallet_inputs_are_refused(call: object) -> None:
    with pytest.raises(InvalidInvoiceInput):
        call()  # type: ignore[operator]
