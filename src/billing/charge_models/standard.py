"""standard: one price per unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount
from billing.charge_models.properties import PropertyErrors, non_negative_decimal


def _amount(properties: Mapping[str, object], errors: PropertyErrors) -> Decimal:
    amount = non_negative_decimal(properties.get("amount"))
    if amount is None:
        errors.add("amount", "invalid_amount")
    return amount or Decimal(0)


def validate(properties: Mapping[str, object]) -> None:
    """`amount` must be a non-negative decimal string."""
    errors = PropertyErrors()
    _amount(properties, errors)
    errors.raise_if_any()


def price(
    units: Decimal,
    properties: Mapping[str, object],
    *,
    events_count: int,
    per_event_amounts: Sequence[Decimal] | None = None,
) -> ChargeAmount:
    """units x amount."""
    errors = PropertyErrors()
    amount = _amount(properties, errors)
    errors.raise_if_any()
    return ChargeAmount(units, units * amount)
