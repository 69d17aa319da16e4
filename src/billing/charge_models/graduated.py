"""graduated: each tier prices the units that fall in it, plus its flat amount once reached."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount
from billing.charge_models.tiers import Ladder, graduated_charge, parse_ladder


def _ladder(properties: Mapping[str, object]) -> Ladder:
    return parse_ladder(
        properties,
        field="graduated_ranges",
        price_key="per_unit_amount",
        price_error="invalid_amount",
    )


def validate(properties: Mapping[str, object]) -> None:
    """`graduated_ranges`: a ladder from 0 to null with decimal `per_unit_amount` and
    `flat_amount` on every tier."""
    _ladder(properties)


def price(
    units: Decimal,
    properties: Mapping[str, object],
    *,
    events_count: int,
    per_event_amounts: Sequence[Decimal] | None = None,
) -> ChargeAmount:
    """Sum over the tiers reached of tier units x per-unit amount, plus each reached tier's
    flat amount."""
    return graduated_charge(_ladder(properties), units, price_divisor=Decimal(1))
