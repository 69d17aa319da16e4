"""Properties of tiered pricing: graduated never decreases; volume prices the reached tier.

Volume pricing is deliberately not asserted monotonic: Lago moves every unit to the tier the
total reaches, so crossing into a cheaper tier can lower the charge. What holds instead is
that volume is monotonic inside a tier and always equals units x that tier's price + flat.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing.charge_models import CHARGE_MODELS

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

prices = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
unit_counts = st.decimals(
    min_value=0, max_value=5_000, places=2, allow_nan=False, allow_infinity=False
)


@st.composite
def ladders(draw: st.DrawFn) -> tuple[list[Decimal], list[tuple[Decimal, Decimal]]]:
    """Upper bounds of every tier but the last, and each tier's (price, flat amount).

    Tiers are at least two units wide, so the non-adjacent spelling (next tier starting one
    unit after the last ends) still has `to_value > from_value`.
    """
    widths = draw(st.lists(st.integers(min_value=2, max_value=1_000), min_size=0, max_size=5))
    bounds: list[Decimal] = []
    total = 0
    for width in widths:
        total += width
        bounds.append(Decimal(total))
    rungs = draw(
        st.lists(st.tuples(prices, prices), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    return bounds, rungs


def spelled(
    field: str,
    bounds: list[Decimal],
    rungs: list[tuple[Decimal, Decimal]],
    *,
    adjacent: bool,
) -> dict[str, object]:
    rows = []
    lower = Decimal(0)
    for index, (price, flat) in enumerate(rungs):
        upper = bounds[index] if index < len(bounds) else None
        rows.append(
            {
                "from_value": str(lower),
                "to_value": None if upper is None else str(upper),
                "per_unit_amount": str(price),
                "flat_amount": str(flat),
            }
        )
        if upper is not None:
            lower = upper if adjacent else upper + 1
    return {field: rows}


@PROPERTY_SETTINGS
@given(ladder=ladders(), a=unit_counts, b=unit_counts, adjacent=st.booleans())
def test_graduated_never_decreases_as_units_grow(
    ladder: tuple[list[Decimal], list[tuple[Decimal, Decimal]]],
    a: Decimal,
    b: Decimal,
    adjacent: bool,
) -> None:
    properties = spelled("graduated_ranges", *ladder, adjacent=adjacent)
    low, high = sorted((a, b))
    price = CHARGE_MODELS["graduated"].price
    assert (
        price(low, properties, events_count=1).amount
        <= price(high, properties, events_count=1).amount
    )


@PROPERTY_SETTINGS
@given(ladder=ladders(), units=st.integers(min_value=0, max_value=5_000))
def test_both_spellings_price_whole_units_alike(
    ladder: tuple[list[Decimal], list[tuple[Decimal, Decimal]]], units: int
) -> None:
    # 0-10, 11-20, 21-null and 0-10, 10-20, 20-null describe the same ladder of whole units.
    price = CHARGE_MODELS["graduated"].price
    step = spelled("graduated_ranges", *ladder, adjacent=False)
    touching = spelled("graduated_ranges", *ladder, adjacent=True)
    assert (
        price(Decimal(units), step, events_count=1).amount
        == price(Decimal(units), touching, events_count=1).amount
    )


@PROPERTY_SETTINGS
@given(ladder=ladders(), units=unit_counts, adjacent=st.booleans())
def test_graduated_units_add_up_across_the_tiers(
    ladder: tuple[list[Decimal], list[tuple[Decimal, Decimal]]], units: Decimal, adjacent: bool
) -> None:
    properties = spelled("graduated_ranges", *ladder, adjacent=adjacent)
    priced = CHARGE_MODELS["graduated"].price(units, properties, events_count=1)
    tier_units = sum((t.units for t in priced.tiers), Decimal(0))
    if adjacent or units == units.to_integral_value():
        assert tier_units == units
    else:
        # Non-adjacent ladders leave a one-unit step between tiers: a fraction past a
        # tier's end counts from the next tier's start, as Lago counts it.
        assert tier_units <= units


@PROPERTY_SETTINGS
@given(ladder=ladders(), a=unit_counts, b=unit_counts, adjacent=st.booleans())
def test_volume_is_monotonic_within_a_tier_and_prices_the_reached_tier(
    ladder: tuple[list[Decimal], list[tuple[Decimal, Decimal]]],
    a: Decimal,
    b: Decimal,
    adjacent: bool,
) -> None:
    bounds, rungs = ladder
    properties = spelled("volume_ranges", bounds, rungs, adjacent=adjacent)
    price = CHARGE_MODELS["volume"].price
    low, high = sorted((a, b))
    low_priced = price(low, properties, events_count=1)
    high_priced = price(high, properties, events_count=1)
    for priced, units in ((low_priced, low), (high_priced, high)):
        index = next((i for i, bound in enumerate(bounds) if units <= bound), len(bounds))
        unit_price, flat = rungs[index]
        assert priced.amount == units * unit_price + flat
    assume(low > 0)
    if low_priced.tiers[0].from_value == high_priced.tiers[0].from_value:
        assert low_priced.amount <= high_priced.amount
