"""Tier ladders (graduated, graduated percentage, volume): parsing, tier reach, units per tier.

Lago writes a ladder's steps two ways. A non-adjacent step starts one unit after the last
tier ended (`0-10, 11-20`), an adjacent one starts where it ended (`0-10, 10-20`); bounds may
be decimals (`0-0.1, 0.1-1, 1-null`). Lago accepts a ladder when its first tier starts at 0
(or 1), every later tier starts at the previous `to_value` or one unit above it, every tier
but the last has `to_value > from_value` and the last has none (lago-api
`Validators::RangeBoundsValidator`).

Either way a tier holds the units above the previous tier's end, up to its own end
(half-open, `(previous to_value, to_value]`): the tier counts
`min(units, to_value) - previous to_value`. For a wholly adjacent or wholly non-adjacent
ladder that is exactly Lago's count (`effective - from` or `effective - from + 1`,
`ChargeModels::AmountDetails::RangeGraduatedService`); a ladder mixing both spellings,
which Lago reads as non-adjacent and so counts one unit too many in its adjacent steps, is
counted step by step here instead. The first tier counts from 0, or from 1 in an adjacent
ladder that starts at 1 (as Lago does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from billing.charge_models.charge_amount import ChargeAmount, TierCharge
from billing.charge_models.properties import PropertyErrors, non_negative_decimal

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung: units in (floor, to_value] at its price (per unit, or a rate) plus its flat
    amount; `floor` is the previous tier's `to_value` (the first tier's starts at 0)."""

    from_value: Decimal
    to_value: Decimal | None
    price: Decimal
    flat_amount: Decimal
    floor: Decimal

    def holds(self, total: Decimal) -> bool:
        """True when `total` units end in this tier."""
        return self.to_value is None or total <= self.to_value

    def units_of(self, total: Decimal) -> Decimal:
        """How many of `total` units fall in the tier (0 when the total ends below it)."""
        reached = total if self.to_value is None else min(total, self.to_value)
        return max(reached - self.floor, _ZERO)


@dataclass(frozen=True, slots=True)
class Ladder:
    """Validated tiers, bottom to top."""

    tiers: tuple[Tier, ...]

    def reached(self, total: Decimal) -> Iterator[tuple[Tier, Decimal]]:
        """Each tier that `total` units reach (the first always), with its units."""
        for tier in self.tiers:
            yield tier, tier.units_of(total)
            if tier.holds(total):
                return

    def tier_holding(self, total: Decimal) -> Tier:
        """The one tier `total` units end in (the first for 0 units)."""
        return next(tier for tier in self.tiers if tier.holds(total))


@dataclass(frozen=True, slots=True)
class LadderSpelling:
    """Where a charge model keeps its ladder and how it names a tier's price."""

    field: str
    price_key: str
    price_error: str
    # Lago documents a graduated percentage tier's rate as its only mandatory price.
    flat_amount_required: bool = True

    def parse(self, properties: Mapping[str, object]) -> Ladder:
        """The ladder under `properties[field]`; InvalidChargeProperties lists every problem."""
        errors = PropertyErrors()
        ladder = self._parse(properties, errors)
        errors.raise_if_any()
        assert ladder is not None  # no error recorded means a ladder was built
        return ladder

    def _parse(self, properties: Mapping[str, object], errors: PropertyErrors) -> Ladder | None:
        raw = properties.get(self.field)
        if not isinstance(raw, list) or not raw:
            errors.add(self.field, f"missing_{self.field}")
            return None
        rows: list[tuple[Decimal, Decimal | None, Decimal, Decimal]] = []
        shape_ok = True
        for item in raw:
            if not isinstance(item, Mapping):
                errors.add(self.field, f"invalid_{self.field}")
                return None
            price = non_negative_decimal(item.get(self.price_key))
            if price is None:
                errors.add(self.price_key, self.price_error)
            default_flat = None if self.flat_amount_required else "0"
            flat = non_negative_decimal(item.get("flat_amount", default_flat))
            if flat is None:
                errors.add("flat_amount", "invalid_amount")
            from_value = tier_bound(item.get("from_value"))
            raw_to = item.get("to_value")
            to_value = None if raw_to is None else tier_bound(raw_to)
            if from_value is None or (raw_to is not None and to_value is None):
                shape_ok = False
                continue
            rows.append((from_value, to_value, price or _ZERO, flat or _ZERO))
        ladder = _checked_ladder(rows) if shape_ok else None
        if ladder is None:
            errors.add(self.field, f"invalid_{self.field}")
        return ladder


def tier_bound(value: object) -> Decimal | None:
    """A tier's `from_value`/`to_value`: a non-negative decimal string or JSON number.

    Lago reads bounds with `BigDecimal(value.to_s)`, so a JSON number such as 0.01 is the
    decimal it is written as: a float is read through its shortest repr, which is that text.
    """
    if isinstance(value, float):
        try:
            value = Decimal(repr(value))
        except InvalidOperation:
            return None
    bound = non_negative_decimal(value)
    return bound if bound is not None and bound.is_finite() else None


def _checked_ladder(rows: list[tuple[Decimal, Decimal | None, Decimal, Decimal]]) -> Ladder | None:
    if rows[0][0] not in (_ZERO, _ONE) or rows[-1][1] is not None:
        return None
    ends: list[Decimal] = []
    for from_value, to_value, _, _ in rows[:-1]:
        if to_value is None or to_value <= from_value:
            return None
        ends.append(to_value)
    starts = [from_value for from_value, _, _, _ in rows[1:]]
    if not all(start in (end, end + _ONE) for end, start in zip(ends, starts, strict=True)):
        return None
    # Lago reads a ladder as adjacent only when every step is: then a first tier starting
    # at 1 counts from 1; otherwise the first tier's units count from 0.
    all_adjacent = bool(ends) and starts == ends
    floors = [rows[0][0] if all_adjacent else _ZERO, *ends]
    return Ladder(
        tuple(
            Tier(from_value, to_value, price, flat, floor)
            for (from_value, to_value, price, flat), floor in zip(rows, floors, strict=True)
        )
    )


def graduated_charge(ladder: Ladder, units: Decimal, *, price_divisor: Decimal) -> ChargeAmount:
    """Sum over the tiers reached of tier units x price / `price_divisor`, plus the flat
    amount of every tier reached, the first tier's even at 0 units (lago-api #5760: "apply
    flat fee even when usage is zero")."""
    tiers: list[TierCharge] = []
    for tier, tier_units in ladder.reached(units):
        amount = tier_units * tier.price / price_divisor + tier.flat_amount
        tiers.append(
            TierCharge(
                tier.from_value, tier.to_value, tier_units, tier.price, tier.flat_amount, amount
            )
        )
    return ChargeAmount(units, sum((t.amount for t in tiers), _ZERO), tuple(tiers))


def volume_charge(ladder: Ladder, units: Decimal) -> ChargeAmount:
    """units x the price of the tier the units end in, plus that tier's flat amount; 0 units
    end in the first tier and pay its flat amount (lago-api #5760)."""
    tier = ladder.tier_holding(units)
    amount = units * tier.price + tier.flat_amount
    charge = TierCharge(tier.from_value, tier.to_value, units, tier.price, tier.flat_amount, amount)
    return ChargeAmount(units, amount, (charge,))
