"""graduated_percentage: each tier takes its rate (percent) of the units in it, plus a flat fee."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount
from billing.charge_models.tiers import Ladder, graduated_charge, parse_ladder

_HUNDRED = Decimal(100)


def _ladder(properties: Mapping[str, object]) -> Ladder:
    return parse_ladder(
        properties,
        field="graduated_percentage_ranges",
        price_key="rate",
        price_error="invalid_rate",
        # Lago documents the rate as a tier's only mandatory price.
        flat_amount_required=False,
    )


def validate(properties: Mapping[str, object]) -> None:
    """`graduated_percentage_ranges`: a ladder from 0 to null with a decimal `rate` (percent)
    and an optional decimal `flat_amount` on every tier."""
    _ladder(properties)


def price(
    units: Decimal,
    properties: Mapping[str, object],
    *,
    events_count: int,
    per_event_amounts: Sequence[Decimal] | None = None,
) -> ChargeAmount:
    """Sum over the tiers reached of tier units x rate / 100, plus each reached tier's flat
    amount once. `units` is usually an amount of money (a sum_agg of transaction amounts)."""
    return graduated_charge(_ladder(properties), units, price_divisor=_HUNDRED)
