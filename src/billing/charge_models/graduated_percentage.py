"""graduated_percentage: each tier takes its rate (percent) of the units in it, plus a flat fee."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, TierCharge
from billing.charge_models.properties import PropertyErrors
from billing.charge_models.tiers import Ladder, parse_ladder

_HUNDRED = Decimal(100)


def _ladder(properties: Mapping[str, object]) -> Ladder:
    errors = PropertyErrors()
    ladder = parse_ladder(
        properties,
        field="graduated_percentage_ranges",
        price_key="rate",
        price_error="invalid_rate",
        errors=errors,
        # Lago documents the rate as a tier's only mandatory price.
        flat_amount_required=False,
    )
    errors.raise_if_any()
    assert ladder is not None
    return ladder


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
                tier_units * tier.price / _HUNDRED + flat,
            )
        )
    return ChargeAmount(units, sum((t.amount for t in tiers), Decimal(0)), tuple(tiers))
