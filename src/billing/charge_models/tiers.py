"""Tier ladders (graduated, graduated percentage, volume): parsing, spelling, units per tier.

Lago writes ladders two ways and infers which from the ladder itself. Non-adjacent ladders
(`0-10, 11-20, 21-null`) count a tier after the first as `units - from + 1`; adjacent ones
(`0-10, 10-20, 20-null`) are half-open, each tier starting where the last ended. A ladder is
adjacent when every tier after the first starts at the previous tier's `to_value`. A ladder
that mixes both spellings is refused here (Lago would silently read it as non-adjacent and
miscount its adjacent steps by one unit).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from billing.charge_models.charge_amount import ChargeAmount, TierCharge
from billing.charge_models.properties import PropertyErrors, non_negative_decimal


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung: [from_value, to_value] with its price (per unit, or a rate) and flat amount."""

    from_value: Decimal
    to_value: Decimal | None
    price: Decimal
    flat_amount: Decimal


@dataclass(frozen=True, slots=True)
class Ladder:
    """Validated tiers, bottom to top, and the spelling they were written in."""

    tiers: tuple[Tier, ...]
    adjacent: bool

    def tier_units(self, tier: Tier, total: Decimal) -> Decimal:
        """How many of `total` units fall in the tier (Lago's per-range unit count)."""
        if self.adjacent:
            reached = total if tier.to_value is None else min(total, tier.to_value)
            return reached - tier.from_value
        if tier.to_value is not None and total >= tier.to_value:
            # A full non-adjacent tier spans from..to inclusive; the first starts at 0 and
            # still holds `to` units, not `to + 1`.
            return tier.to_value - max(tier.from_value, Decimal(1)) + 1
        if tier.from_value == 0:
            return total
        return total - tier.from_value + 1

    def reached(self, total: Decimal) -> Iterator[tuple[Tier, Decimal]]:
        """Each tier that total units reach, with the units falling in it."""
        for tier in self.tiers:
            yield tier, self.tier_units(tier, total)
            if tier.to_value is None or tier.to_value >= total:
                return


def parse_ladder(
    properties: Mapping[str, object],
    *,
    field: str,
    price_key: str,
    price_error: str,
    flat_amount_required: bool = True,
) -> Ladder:
    """The ladder under `properties[field]`; InvalidChargeProperties lists every problem."""
    errors = PropertyErrors()
    ladder = _parse_ladder(properties, field, price_key, price_error, errors, flat_amount_required)
    errors.raise_if_any()
    assert ladder is not None  # no error recorded means a ladder was built
    return ladder


def graduated_charge(ladder: Ladder, units: Decimal, *, price_divisor: Decimal) -> ChargeAmount:
    """Sum over the tiers reached of tier units x price / `price_divisor`, plus the flat
    amount of every tier holding at least one unit (Lago charges a tier's flat fee whole)."""
    tiers: list[TierCharge] = []
    for tier, tier_units in ladder.reached(units):
        flat = tier.flat_amount if tier_units else Decimal(0)
        amount = tier_units * tier.price / price_divisor + flat
        tiers.append(
            TierCharge(tier.from_value, tier.to_value, tier_units, tier.price, flat, amount)
        )
    return ChargeAmount(units, sum((t.amount for t in tiers), Decimal(0)), tuple(tiers))


def _parse_ladder(
    properties: Mapping[str, object],
    field: str,
    price_key: str,
    price_error: str,
    errors: PropertyErrors,
    flat_amount_required: bool,
) -> Ladder | None:
    raw = properties.get(field)
    if not isinstance(raw, list) or not raw:
        errors.add(field, f"missing_{field}")
        return None
    tiers: list[Tier] = []
    shape_ok = True
    for item in raw:
        if not isinstance(item, Mapping):
            errors.add(field, f"invalid_{field}")
            return None
        price = non_negative_decimal(item.get(price_key))
        if price is None:
            errors.add(price_key, price_error)
        default_flat = None if flat_amount_required else "0"
        flat = non_negative_decimal(item.get("flat_amount", default_flat))
        if flat is None:
            errors.add("flat_amount", "invalid_amount")
        from_value = non_negative_decimal(item.get("from_value"))
        raw_to = item.get("to_value")
        to_value = None if raw_to is None else non_negative_decimal(raw_to)
        if from_value is None or (raw_to is not None and to_value is None):
            shape_ok = False
            continue
        tiers.append(Tier(from_value, to_value, price or Decimal(0), flat or Decimal(0)))
    ladder = _checked_ladder(tiers) if shape_ok else None
    if ladder is None:
        errors.add(field, f"invalid_{field}")
    return ladder


def _checked_ladder(tiers: list[Tier]) -> Ladder | None:
    if tiers[0].from_value != 0:
        return None
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if last and tier.to_value is not None:
            return None
        if not last and (tier.to_value is None or tier.to_value <= tier.from_value):
            return None
    adjacent_steps: set[bool] = set()
    for lower, upper in pairwise(tiers):
        assert lower.to_value is not None  # every tier but the last has one (checked above)
        if upper.from_value == lower.to_value:
            adjacent_steps.add(True)
        elif upper.from_value == lower.to_value + 1:
            adjacent_steps.add(False)
        else:
            return None
    if len(adjacent_steps) > 1:
        return None
    return Ladder(tuple(tiers), adjacent=adjacent_steps == {True})
