"""Currencies, minor units and the single half-up rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.errors import BillingError, UnknownCurrency
from billing.money import (
    LAGO_CURRENCIES,
    SUPPORTED_CURRENCIES,
    as_decimal,
    from_cents,
    minor_units,
    round_amount,
    round_cents,
    to_cents,
)


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("INR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("VND", 0),
        ("CLP", 0),
        ("ISK", 0),
        ("XOF", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_minor_units(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


@pytest.mark.parametrize(
    ("amount", "currency", "cents"),
    [
        ("12.345", "USD", 1235),
        ("12.344", "USD", 1234),
        ("0.005", "USD", 1),
        ("0.004", "USD", 0),
        ("-0.005", "USD", -1),
        ("2.5", "JPY", 3),
        ("3.5", "JPY", 4),
        ("1.4999", "JPY", 1),
        ("1.0005", "KWD", 1001),
        ("1.0004", "KWD", 1000),
        ("49", "USD", 4900),
        ("0.70", "EUR", 70),
        (Decimal("15.1612903226"), "USD", 1516),
        (100, "JPY", 100),
    ],
)
def test_to_cents_rounds_half_up_to_the_minor_unit(
    amount: str | Decimal | int, currency: str, cents: int
) -> None:
    assert to_cents(amount, currency) == cents


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [("12.345", "USD", "12.35"), ("2.5", "JPY", "3"), ("1.23456", "BHD", "1.235")],
)
def test_round_amount(amount: str, currency: str, rounded: str) -> None:
    result = round_amount(amount, currency)
    assert result == Decimal(rounded)
    assert str(result) == rounded


@pytest.mark.parametrize(
    ("cents", "currency", "amount"),
    [(1235, "USD", "12.35"), (3, "JPY", "3"), (1001, "KWD", "1.001"), (0, "EUR", "0.00")],
)
def test_from_cents_is_the_inverse(cents: int, currency: str, amount: str) -> None:
    assert from_cents(cents, currency) == Decimal(amount)
    assert to_cents(from_cents(cents, currency), currency) == cents


@pytest.mark.parametrize("code", ["usd", "XXX", "", "US", "EURO", None, 840])
def test_unknown_currencies_are_refused(code: object) -> None:
    with pytest.raises(UnknownCurrency) as caught:
        minor_units(code)  # type: ignore[arg-type]
    assert isinstance(caught.value, BillingError)


def test_lago_currencies_are_all_supported() -> None:
    assert "USD" in LAGO_CURRENCIES
    assert len(LAGO_CURRENCIES) > 100
    assert LAGO_CURRENCIES <= SUPPORTED_CURRENCIES
    assert all(minor_units(code) in (0, 2, 3, 4) for code in SUPPORTED_CURRENCIES)


@pytest.mark.parametrize("value", [0.1, True, None, [1]])
def test_floats_and_other_types_never_become_money(value: object) -> None:
    with pytest.raises(TypeError):
        as_decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "abc"])
def test_non_finite_or_malformed_money_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        as_decimal(value)


@pytest.mark.parametrize(("precise", "cents"), [("33.3", 33), ("33.5", 34), ("-0.5", -1), (7, 7)])
def test_round_cents(precise: str | int, cents: int) -> None:
    assert round_cents(precise) == cents
