"""volume: every unit at the price of the one tier the total reaches, plus its flat amount.

Unlike graduated pricing this is not monotonic: crossing into a cheaper tier can lower the
whole charge (100 units at 1.00 cost 100.00; 101 at 0.50 cost 50.50). That is Lago's
documented behaviour, kept as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, TierCharge
from billing.charge_models.tiers import Ladder, parse_ladder


def _ladder(properties: Mapping[str, object]) -> Ladder:
    return parse_ladder(
        properties,
        field="volume_ranges",
        price_key="per_unit_amount",
        price_error="invalid_amount",
    )


def validate(properties: Mapping[str, object]) -> None:
    """`volume_ranges`: a ladder from 0 to null with decimal `per_unit_amount` and
    `flat_amount` on every tier."""
    _ladder(properties)


def price(
    units: Decimal,
    properties: Mapping[str, object],
    *,
    events_count: int,
    per_event_amounts: Sequence[Decimal] | None = None,
) -> ChargeAmount:
    """units x the reached tier's per-unit amount + its flat amount; nothing for 0 units.

    The reached tier is the first whose `to_value` is null or at least the units, so a
    fractional total between a non-adjacent tier's end and the next one's start (100.5 in
    `0-100, 101-null`) belongs to the upper tier, as in graduated pricing (Lago itself finds
    no tier there).
    """
    ladder = _ladder(properties)
    if units == 0:
        return ChargeAmount(units, Decimal(0))
    tier = next(t for t in ladder.tiers if t.to_value is None or units <= t.to_value)
    amount = units * tier.price + tier.flat_amount
    charge = TierCharge(tier.from_value, tier.to_value, units, tier.price, tier.flat_amount, amount)
    return ChargeAmount(units, amount, (charge,))
