"""Prepaid credits: converting credits to money through a wallet's rate, and which wallets
pay how much of an invoice.

A wallet's `rate_amount` is the price of one credit in the wallet's currency (Lago's
meaning: `rate_amount` 1.5 makes 10 credits worth 15.00). The balance is kept in integer
minor units; a top-up converts its credits once, rounding half up to the minor unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from billing.errors import InvalidInvoiceInput
from billing.money import from_cents, minor_units, round_cents


def _positive_rate(rate_amount: Decimal) -> Decimal:
    if not rate_amount.is_finite() or rate_amount <= 0:
        raise InvalidInvoiceInput(f"rate_amount must be a positive number: {rate_amount}")
    return rate_amount


def credits_to_cents(credits: Decimal, rate_amount: Decimal, currency: str) -> int:
    """What `credits` are worth in minor units (10 credits at 1.5 USD -> 1500)."""
    if not credits.is_finite() or credits < 0:
        raise InvalidInvoiceInput(f"credits must be a non-negative number: {credits}")
    value = credits * _positive_rate(rate_amount)
    return round_cents(value.scaleb(minor_units(currency)))


def cents_to_credits(cents: int, rate_amount: Decimal, currency: str) -> Decimal:
    """How many credits `cents` make (1500 USD cents at 1.5 -> 10), exact to 5 decimals,
    Lago's precision for credit amounts."""
    credits = from_cents(cents, currency) / _positive_rate(rate_amount)
    return credits.quantize(Decimal("0.00001")).normalize() + Decimal("0.0")


def consume_prepaid(due_cents: int, balances: Sequence[int]) -> tuple[int, ...]:
    """What each wallet, in the order given (Lago's: priority, then oldest), pays of
    `due_cents`: each pays as much as it holds until nothing is due."""
    if due_cents < 0 or any(b < 0 for b in balances):
        raise InvalidInvoiceInput("amounts due and wallet balances must be non-negative")
    paid: list[int] = []
    for balance in balances:
        take = min(balance, due_cents)
        paid.append(take)
        due_cents -= take
    return tuple(paid)


def granted_first(cents: int, granted_balance_cents: int) -> tuple[int, int]:
    """(granted, purchased) parts of `cents` taken from a wallet: its granted credits go
    first, as Lago consumes them at equal priority."""
    if cents < 0 or granted_balance_cents < 0:
        raise InvalidInvoiceInput("amounts taken and granted balances must be non-negative")
    granted = min(cents, granted_balance_cents)
    return granted, cents - granted
