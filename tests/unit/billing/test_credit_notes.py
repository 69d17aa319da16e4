"""Credit note arithmetic: coupon shares prorated per item, taxes on what remains, the
creditable remainder of a fee enforced."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.credit_notes import CreditedFee, credit_note_amounts
from billing.errors import InvalidInvoiceInput

VAT = ("vat", Decimal(20))


def test_items_without_coupons_or_taxes_credit_their_amount() -> None:
    fee = CreditedFee("f", 10000, Decimal(0), 0)
    amounts = credit_note_amounts([(fee, 2500)])
    assert (amounts.sub_total_excluding_taxes_cents, amounts.total_cents) == (2500, 2500)


def test_coupon_share_and_taxes_are_prorated_per_item() -> None:
    # Fee 200.00 bearing 50.00 of coupons, VAT 20 %; crediting 80.00 of it takes 20.00 of
    # coupons off (80/200 of 50.00), and VAT applies to the 60.00 left: 12.00.
    setup = CreditedFee("a", 20000, Decimal(5000), 0, (VAT,))
    amounts = credit_note_amounts([(setup, 8000)])
    assert amounts.coupons_adjustment_cents == 2000
    assert amounts.sub_total_excluding_taxes_cents == 6000
    assert amounts.taxes_cents == 1200
    assert amounts.total_cents == 7200


def test_two_taxes_over_two_fees_round_once() -> None:
    reduced = ("reduced", Decimal("5.5"))
    a = CreditedFee("a", 20000, Decimal(0), 0, (VAT,))
    b = CreditedFee("b", 3750, Decimal(0), 0, (reduced,))
    amounts = credit_note_amounts([(a, 1001), (b, 3750)])
    # 10.01 * 20 % = 2.002; 37.50 * 5.5 % = 2.0625; together 4.0645 -> 4.06
    assert amounts.taxes_cents == 406
    assert [(t.code, t.amount_cents) for t in amounts.taxes] == [("reduced", 206), ("vat", 200)]
    assert amounts.total_cents == 1001 + 3750 + 406


@pytest.mark.parametrize("cents", [0, -1, 7501])
def test_an_item_is_at_most_what_is_left_of_its_fee(cents: int) -> None:
    fee = CreditedFee("f", 10000, Decimal(0), 2500)
    with pytest.raises(InvalidInvoiceInput):
        credit_note_amounts([(fee, cents)])
