"""Credit note arithmetic as Lago does it: each item credits part of one fee (at most what
is left of it after earlier credit notes); the fee's coupon share is taken off in proportion
(`coupons_adjustment`), each tax applies to what remains of the items it is on, and the total
(items less coupons, plus taxes) is what can be credited to the customer's balance or
refunded. Amounts in integer minor units; precise figures as Decimal cents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from billing.errors import InvalidInvoiceInput
from billing.money import round_cents
from billing.wallet import consume_prepaid

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class CreditedFee:
    """A fee of the invoice as a credit note sees it."""

    fee_id: str
    amount_cents: int
    # The fee's share of the invoice's coupons (Lago's precise_coupons_amount_cents).
    precise_coupons_cents: Decimal
    # What earlier (not voided) credit notes already credited of it.
    credited_cents: int
    # (tax code, rate in percent) of each tax on the fee.
    taxes: tuple[tuple[str, Decimal], ...] = ()

    @property
    def creditable_cents(self) -> int:
        return self.amount_cents - self.credited_cents


@dataclass(frozen=True, slots=True)
class CreditNoteTax:
    code: str
    rate: Decimal
    base_cents: Decimal
    amount_cents: int


@dataclass(frozen=True, slots=True)
class CreditNoteAmounts:
    coupons_adjustment_precise: Decimal
    coupons_adjustment_cents: int
    sub_total_excluding_taxes_cents: int
    taxes_precise: Decimal
    taxes_cents: int
    taxes_rate: Decimal
    total_cents: int
    taxes: tuple[CreditNoteTax, ...]


def credit_note_amounts(items: Sequence[tuple[CreditedFee, int]]) -> CreditNoteAmounts:
    """The amounts of a credit note crediting `amount_cents` of each fee given.

    Raises InvalidInvoiceInput when an amount is not positive or exceeds what is left of
    its fee to credit.
    """
    adjustment = Decimal(0)
    bases: dict[tuple[str, Decimal], Decimal] = {}
    items_cents = 0
    for fee, cents in items:
        if cents <= 0 or cents > fee.creditable_cents:
            raise InvalidInvoiceInput(
                f"fee {fee.fee_id}: {cents} is not in 1..{fee.creditable_cents}"
            )
        share = fee.precise_coupons_cents * cents / fee.amount_cents if fee.amount_cents else 0
        adjustment += share
        items_cents += cents
        for key in fee.taxes:
            bases[key] = bases.get(key, Decimal(0)) + cents - share
    taxes = tuple(
        CreditNoteTax(code, rate, base, round_cents(base * rate / _HUNDRED))
        for (code, rate), base in sorted(bases.items())
    )
    taxes_precise = sum((t.base_cents * t.rate / _HUNDRED for t in taxes), Decimal(0))
    sub_total = round_cents(items_cents - adjustment)
    taxes_cents = round_cents(taxes_precise)
    rate = sum((t.rate for t in taxes), Decimal(0))
    return CreditNoteAmounts(
        coupons_adjustment_precise=adjustment,
        coupons_adjustment_cents=round_cents(adjustment),
        sub_total_excluding_taxes_cents=sub_total,
        taxes_precise=taxes_precise,
        taxes_cents=taxes_cents,
        taxes_rate=rate,
        total_cents=sub_total + taxes_cents,
        taxes=taxes,
    )


@dataclass(frozen=True, slots=True)
class CreditNoteTerms:
    """An available credit note of the customer, its balance as read before pricing."""

    credit_note_id: str
    currency: str
    balance_cents: int


def available_cents(notes: Sequence[CreditNoteTerms], currency: str) -> int:
    """What the credit notes in `currency` can still pay."""
    return sum(n.balance_cents for n in notes if n.currency == currency)


def split_credit(
    cents: int, notes: Sequence[CreditNoteTerms], currency: str
) -> tuple[tuple[CreditNoteTerms, int], ...]:
    """What each credit note in `currency` pays of `cents`, in the order given (oldest first):
    each as much as it holds until nothing is due."""
    fitting = [n for n in notes if n.currency == currency]
    paid = consume_prepaid(cents, [n.balance_cents for n in fitting])
    return tuple((n, p) for n, p in zip(fitting, paid, strict=True) if p)
