"""graduated: each tier prices the units that fall in it, plus its flat amount once reached."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, TierCharge
from billing.charge_models.properties import PropertyErrors
from billing.charge_models.tiers import Ladder, parse_ladder


def _ladder(properties: Mapping[str, object]) -> Ladder:
    errors = PropertyErrors()
    ladder = parse_ladder(
        properties,
        field="graduated_ranges",
        price_key="per_unit_amount",
        price_error="invalid_amount",
        errors=errors,
    )
    errors.raise_if_any()
    assert ladder is not None
    return ladder


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
    """Sum over the tiers reached of tier units x per-unit amount, plus the flat amount of
    every tier that holds at least one unit (Lago charges a tier's flat fee whole)."""
    tiers: list[TierCharge] = []
    for tier, tier_units in _ladder(properties).reached(units):
        flat = tier.flat_amount if tier_units else Decimal(0)
        tiers.append(
            TierCharge(
                tier.from_value,
                tier.to_value,
                tier_units,
                tier.price,
                flat,
                tier_units * tier.price + flat,
            )
        )
    return ChargeAmount(units, sum((t.amount for t in tiers), Decimal(0)), tuple(tiers))
