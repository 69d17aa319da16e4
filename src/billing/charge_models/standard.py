"""standard: one price per unit."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.properties import PropertyErrors, non_negative_decimal


def parse(properties: Mapping[str, object]) -> Decimal:
    """`amount`, a non-negative decimal string: the price of one unit."""
    price = non_negative_decimal(properties.get("amount"))
    if price is None:
        errors = PropertyErrors()
        errors.add("amount", "invalid_amount")
        errors.raise_if_any()
    assert price is not None
    return price


def amount(price: Decimal, usage: ChargeUsage) -> ChargeAmount:
    """units x amount."""
    return ChargeAmount(usage.units, usage.units * price)
