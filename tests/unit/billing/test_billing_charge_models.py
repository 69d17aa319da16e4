"""Charge models reproduce Lago's published examples to the cent, and refuse bad properties."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.aggregations import SumAggregation
from billing.aggregations.sum_agg import KeptEvents
from billing.charge_models import CHARGE_MODELS, kept_events, price_state
from billing.errors import InvalidChargeProperties
from billing.periods import BillingPeriod

D = Decimal


def tiers(
    field: str, price_key: str, *rows: tuple[float | str, float | str | None, str, str]
) -> dict[str, object]:
    return {
        field: [
            {"from_value": lo, "to_value": hi, price_key: price, "flat_amount": flat}
            for lo, hi, price, flat in rows
        ]
    }


# Lago's graduated example: 1.00 per unit for the first 100, 0.50 for the next 100, then 0.10.
GRADUATED_DOC = tiers(
    "graduated_ranges",
    "per_unit_amount",
    (0, 100, "1", "0"),
    (101, 200, "0.5", "0"),
    (201, None, "0.1", "0"),
)
GRADUATED_DOC_ADJACENT = tiers(
    "graduated_ranges",
    "per_unit_amount",
    (0, 100, "1", "0"),
    (100, 200, "0.5", "0"),
    (200, None, "0.1", "0"),
)
# The API reference's plan example: 0-10 at 0.5 with a flat 10, then 0.4 per unit.
GRADUATED_SPEC = tiers(
    "graduated_ranges", "per_unit_amount", (0, 10, "0.5", "10"), (11, None, "0.4", "0")
)
GRADUATED_FLAT_TIERS = tiers(
    "graduated_ranges",
    "per_unit_amount",
    (0, 10, "0", "5"),
    (11, 20, "0", "7"),
    (21, None, "1", "3"),
)
# Lago's graduated percentage example: 1% + 200, 2% + 300, 3% + 400.
GRADUATED_PERCENTAGE_DOC = tiers(
    "graduated_percentage_ranges",
    "rate",
    (0, 1000, "1", "200"),
    (1001, 10000, "2", "300"),
    (10001, None, "3", "400"),
)
# Lago's volume example: four tiers, a fixed 10 each.
VOLUME_DOC = tiers(
    "volume_ranges",
    "per_unit_amount",
    (0, 10000, "0.001", "10"),
    (10001, 50000, "0.0008", "10"),
    (50001, 100000, "0.0006", "10"),
    (100001, None, "0.0004", "10"),
)
VOLUME_SPEC = tiers("volume_ranges", "per_unit_amount", (0, 100, "0", "0"), (101, None, "0.5", "0"))
VOLUME_ADJACENT = tiers(
    "volume_ranges", "per_unit_amount", (0, 100, "1", "0"), (100, None, "0.5", "0")
)
# Decimal bounds (lago-api Validators::RangeBoundsValidator accepts them): adjacent, mixed
# (an adjacent step then a one-unit step) and non-adjacent ladders.
GRADUATED_DECIMAL_ADJACENT = tiers(
    "graduated_ranges",
    "per_unit_amount",
    ("0", "0.1", "10", "0"),
    ("0.1", "1", "5", "0"),
    ("1", None, "1", "0"),
)
GRADUATED_DECIMAL_MIXED = tiers(
    "graduated_ranges",
    "per_unit_amount",
    (0, 0.01, "100", "2"),
    (0.01, 10, "1", "0"),
    (11, None, "0.5", "3"),
)
VOLUME_DECIMAL = tiers(
    "volume_ranges", "per_unit_amount", ("0", "0.5", "2", "1"), ("0.5", None, "1", "0")
)
GRADUATED_PERCENTAGE_DECIMAL = tiers(
    "graduated_percentage_ranges", "rate", ("0", "0.5", "10", "1"), ("1.5", None, "20", "0")
)
PACKAGE_DOC = {"amount": "5", "free_units": 100, "package_size": 100}
PACKAGE_SPEC = {"amount": "30", "free_units": 100, "package_size": 1000}
STANDARD_DOC = {"amount": "0.05"}
PERCENTAGE_DOC = {
    "rate": "1.2",
    "fixed_amount": "0.10",
    "free_units_per_events": 3,
    "free_units_per_total_aggregation": "500",
}
PERCENTAGE_SPEC = {
    "rate": "1",
    "fixed_amount": "0.5",
    "free_units_per_events": 5,
    "free_units_per_total_aggregation": "500",
}

# (charge model, properties, units, per-event amounts or None, USD amount to the cent)
EXAMPLES = [
    # standard: 0.05 per API call; 1,000 calls cost 50.
    ("standard", STANDARD_DOC, "1000", None, "50.00"),
    ("standard", STANDARD_DOC, "0", None, "0.00"),
    ("standard", STANDARD_DOC, "3", None, "0.15"),
    ("standard", {"amount": "0.0033"}, "3", None, "0.01"),
    ("standard", {"amount": "0.005"}, "1", None, "0.01"),
    ("standard", {"amount": "30"}, "2.5", None, "75.00"),
    # graduated
    ("graduated", GRADUATED_DOC, "0", None, "0.00"),
    ("graduated", GRADUATED_DOC, "1", None, "1.00"),
    ("graduated", GRADUATED_DOC, "100", None, "100.00"),
    ("graduated", GRADUATED_DOC, "101", None, "100.50"),
    ("graduated", GRADUATED_DOC, "150", None, "125.00"),
    ("graduated", GRADUATED_DOC, "200", None, "150.00"),
    ("graduated", GRADUATED_DOC, "201", None, "150.10"),
    ("graduated", GRADUATED_DOC, "250", None, "155.00"),
    ("graduated", GRADUATED_DOC, "1000", None, "230.00"),
    ("graduated", GRADUATED_DOC, "100.5", None, "100.25"),
    ("graduated", GRADUATED_DOC_ADJACENT, "100", None, "100.00"),
    ("graduated", GRADUATED_DOC_ADJACENT, "101", None, "100.50"),
    ("graduated", GRADUATED_DOC_ADJACENT, "250", None, "155.00"),
    ("graduated", GRADUATED_DOC_ADJACENT, "100.5", None, "100.25"),
    # lago-api #5760: a reached tier's flat amount is charged even at 0 units.
    ("graduated", GRADUATED_SPEC, "0", None, "10.00"),
    ("graduated", GRADUATED_SPEC, "1", None, "10.50"),
    ("graduated", GRADUATED_SPEC, "10", None, "15.00"),
    ("graduated", GRADUATED_SPEC, "11", None, "15.40"),
    ("graduated", GRADUATED_SPEC, "15", None, "17.00"),
    ("graduated", GRADUATED_FLAT_TIERS, "1", None, "5.00"),
    ("graduated", GRADUATED_FLAT_TIERS, "10", None, "5.00"),
    ("graduated", GRADUATED_FLAT_TIERS, "11", None, "12.00"),
    ("graduated", GRADUATED_FLAT_TIERS, "21", None, "16.00"),
    ("graduated", GRADUATED_FLAT_TIERS, "25", None, "20.00"),
    # graduated percentage: transactions of 500, then 550, then 4,000 cost 205, 306 and 80:
    # cumulative totals 205, 511 and 591.
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "0", None, "200.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "500", None, "205.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "1050", None, "511.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "5050", None, "591.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "1000", None, "210.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DOC, "20000", None, "1390.00"),
    # volume: 65,000 calls cost 65,000 x 0.0006 + 10 = 49.
    ("volume", VOLUME_DOC, "65000", None, "49.00"),
    ("volume", VOLUME_DOC, "0", None, "10.00"),
    ("volume", VOLUME_DOC, "1", None, "10.00"),
    ("volume", VOLUME_DOC, "10000", None, "20.00"),
    ("volume", VOLUME_DOC, "10001", None, "18.00"),
    ("volume", VOLUME_DOC, "50000", None, "50.00"),
    ("volume", VOLUME_DOC, "50001", None, "40.00"),
    ("volume", VOLUME_DOC, "200000", None, "90.00"),
    ("volume", VOLUME_SPEC, "100", None, "0.00"),
    ("volume", VOLUME_SPEC, "150", None, "75.00"),
    ("volume", VOLUME_ADJACENT, "100", None, "100.00"),
    ("volume", VOLUME_ADJACENT, "100.5", None, "50.25"),
    # decimal bounds: a tier holds the units above the previous tier's end up to its own.
    ("graduated", GRADUATED_DECIMAL_ADJACENT, "0.05", None, "0.50"),
    ("graduated", GRADUATED_DECIMAL_ADJACENT, "0.1", None, "1.00"),
    ("graduated", GRADUATED_DECIMAL_ADJACENT, "0.5", None, "3.00"),
    ("graduated", GRADUATED_DECIMAL_ADJACENT, "1", None, "5.50"),
    ("graduated", GRADUATED_DECIMAL_ADJACENT, "3", None, "7.50"),
    ("graduated", GRADUATED_DECIMAL_MIXED, "0", None, "2.00"),
    ("graduated", GRADUATED_DECIMAL_MIXED, "0.01", None, "3.00"),
    ("graduated", GRADUATED_DECIMAL_MIXED, "10", None, "12.99"),
    ("graduated", GRADUATED_DECIMAL_MIXED, "10.5", None, "16.24"),
    ("graduated", GRADUATED_DECIMAL_MIXED, "12", None, "16.99"),
    ("volume", VOLUME_DECIMAL, "0", None, "1.00"),
    ("volume", VOLUME_DECIMAL, "0.5", None, "2.00"),
    ("volume", VOLUME_DECIMAL, "0.6", None, "0.60"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DECIMAL, "0", None, "1.00"),
    ("graduated_percentage", GRADUATED_PERCENTAGE_DECIMAL, "1", None, "1.15"),
    # package: 5 per 100 units, the first 100 free; 201 units cost 0 + 5 + 5 = 10.
    ("package", PACKAGE_DOC, "201", None, "10.00"),
    ("package", PACKAGE_DOC, "0", None, "0.00"),
    ("package", PACKAGE_DOC, "100", None, "0.00"),
    ("package", PACKAGE_DOC, "101", None, "5.00"),
    ("package", PACKAGE_DOC, "200", None, "5.00"),
    ("package", PACKAGE_DOC, "300", None, "10.00"),
    ("package", PACKAGE_DOC, "100.5", None, "5.00"),
    ("package", PACKAGE_SPEC, "1100", None, "30.00"),
    ("package", PACKAGE_SPEC, "1101", None, "60.00"),
    ("package", {"amount": "2.5", "free_units": 0, "package_size": 3}, "7", None, "7.50"),
    # percentage: 1.2% + 0.10 per transaction, the first 3 transactions or 500 free; the
    # fourth transaction (50) costs 0.10 + 1.2% of 50 = 0.70.
    ("percentage", PERCENTAGE_DOC, "200", ["200"], "0.00"),
    ("percentage", PERCENTAGE_DOC, "300", ["200", "100"], "0.00"),
    ("percentage", PERCENTAGE_DOC, "400", ["200", "100", "100"], "0.00"),
    ("percentage", PERCENTAGE_DOC, "450", ["200", "100", "100", "50"], "0.70"),
    ("percentage", {"rate": "1.2"}, "450", None, "5.40"),
    ("percentage", {"rate": "1.2", "fixed_amount": "0.10"}, "450", ["200", "250"], "5.60"),
    ("percentage", {"rate": "2.5", "fixed_amount": "1"}, "0", None, "0.00"),
    (
        "percentage",
        {"rate": "1", "free_units_per_total_aggregation": "500"},
        "450",
        ["200", "250"],
        "0.00",
    ),
    (
        "percentage",
        {"rate": "1", "free_units_per_total_aggregation": "500"},
        "800",
        ["200", "250", "350"],
        "3.00",
    ),
    # Lago spares the fixed fee only for events whose running total stays strictly below
    # the free amount, at most free_units_per_events of them: here 4 of the 5 (the fifth
    # reaches 500 exactly), so 500 x 1% + 6 x 0.5 = 8.00.
    ("percentage", PERCENTAGE_SPEC, "1000", ["100"] * 10, "8.00"),
    # The free amount caps at 500: 200 x 1% + 2 paid events x 0.5 = 3.00.
    ("percentage", PERCENTAGE_SPEC, "700", ["300", "300", "100"], "3.00"),
    # per-transaction bounds: each paid event is clamped to [min, max] on its own.
    (
        "percentage",
        {"rate": "1", "per_transaction_min_amount": "1.75"},
        "300",
        ["100", "200"],
        "3.75",
    ),
    (
        "percentage",
        {"rate": "1", "per_transaction_max_amount": "3.75"},
        "1100",
        ["1000", "100"],
        "4.75",
    ),
    (
        "percentage",
        {
            "rate": "1",
            "fixed_amount": "0.5",
            "per_transaction_min_amount": "1",
            "per_transaction_max_amount": "2",
            "free_units_per_events": 1,
        },
        "1010",
        ["10", "0", "1000"],
        "3.00",
    ),
]


@pytest.mark.parametrize(("model", "properties", "units", "per_event", "usd"), EXAMPLES)
def test_lago_examples_to_the_cent(
    model: str,
    properties: dict[str, object],
    units: str,
    per_event: list[str] | None,
    usd: str,
) -> None:
    charge = CHARGE_MODELS[model]
    charge.validate(properties)
    amounts = None if per_event is None else [D(v) for v in per_event]
    priced = charge.price(
        D(units),
        properties,
        events_count=len(per_event) if per_event is not None else 1,
        per_event_amounts=amounts,
    )
    assert priced.units == D(units)
    assert priced.amount_cents("USD") == int(D(usd) * 100)


def test_graduated_details_list_each_tier_reached() -> None:
    priced = CHARGE_MODELS["graduated"].price(D(15), GRADUATED_SPEC, events_count=1)
    assert [(t.units, t.flat_amount, t.amount) for t in priced.tiers] == [
        (D(10), D(10), D(15)),
        (D(5), D(0), D(2)),
    ]


def test_the_amount_stays_precise_until_the_fee_rounds_it() -> None:
    priced = CHARGE_MODELS["standard"].price(D(3), {"amount": "0.0033"}, events_count=3)
    assert priced.amount == D("0.0099")
    assert priced.amount_cents("USD") == 1
    assert priced.amount_cents("JPY") == 0


def test_volume_can_cost_less_past_a_tier_boundary() -> None:
    # Lago's documented volume behaviour: every unit moves to the cheaper tier.
    volume = CHARGE_MODELS["volume"]
    at_boundary = volume.price(D(100), VOLUME_ADJACENT, events_count=1).amount
    past_boundary = volume.price(D(101), VOLUME_ADJACENT, events_count=1).amount
    assert past_boundary < at_boundary


def test_percentage_needs_event_amounts_when_free_units_are_set() -> None:
    with pytest.raises(ValueError, match="per_event_amounts"):
        CHARGE_MODELS["percentage"].price(D(450), PERCENTAGE_DOC, events_count=4)
    with pytest.raises(ValueError, match="holds 5 values for 4 events"):
        CHARGE_MODELS["percentage"].price(
            D(450), PERCENTAGE_DOC, events_count=4, per_event_amounts=[D(90)] * 5
        )


def test_registry_is_keyed_by_lagos_charge_models() -> None:
    assert sorted(CHARGE_MODELS) == [
        "graduated",
        "graduated_percentage",
        "package",
        "percentage",
        "standard",
        "volume",
    ]


# (charge model, properties, expected error_details)
INVALID = [
    ("standard", {}, {"amount": ["invalid_amount"]}),
    ("standard", {"amount": "-1"}, {"amount": ["invalid_amount"]}),
    ("standard", {"amount": 0.05}, {"amount": ["invalid_amount"]}),
    ("standard", {"amount": "abc"}, {"amount": ["invalid_amount"]}),
    ("graduated", {}, {"graduated_ranges": ["missing_graduated_ranges"]}),
    ("graduated", {"graduated_ranges": []}, {"graduated_ranges": ["missing_graduated_ranges"]}),
    (
        "graduated",
        tiers("graduated_ranges", "per_unit_amount", (2, None, "1", "0")),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers("graduated_ranges", "per_unit_amount", (0, 10, "1", "0")),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers("graduated_ranges", "per_unit_amount", (0, 10, "1", "0"), (12, None, "1", "0")),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers(
            "graduated_ranges", "per_unit_amount", (0, float("inf"), "1", "0"), (1, None, "1", "0")
        ),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers("graduated_ranges", "per_unit_amount", (0, 10, "1", "0"), (9, None, "1", "0")),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers(
            "graduated_ranges", "per_unit_amount", (0, float("nan"), "1", "0"), (0, None, "1", "0")
        ),
        {"graduated_ranges": ["invalid_graduated_ranges"]},
    ),
    (
        "graduated",
        tiers("graduated_ranges", "per_unit_amount", (0, 10, "x", "-1"), (11, None, "1", "0")),
        {"per_unit_amount": ["invalid_amount"], "flat_amount": ["invalid_amount"]},
    ),
    (
        "graduated",
        {"graduated_ranges": [{"from_value": 0, "to_value": None, "per_unit_amount": "1"}]},
        {"flat_amount": ["invalid_amount"]},
    ),
    (
        "graduated_percentage",
        tiers("graduated_percentage_ranges", "rate", (0, None, "-1", "0")),
        {"rate": ["invalid_rate"]},
    ),
    (
        "graduated_percentage",
        {},
        {"graduated_percentage_ranges": ["missing_graduated_percentage_ranges"]},
    ),
    ("volume", {"volume_ranges": "0-10"}, {"volume_ranges": ["missing_volume_ranges"]}),
    (
        "volume",
        tiers("volume_ranges", "per_unit_amount", (0, 10, "1", "0"), (5, None, "1", "0")),
        {"volume_ranges": ["invalid_volume_ranges"]},
    ),
    (
        "package",
        {},
        {
            "amount": ["invalid_amount"],
            "free_units": ["invalid_free_units"],
            "package_size": ["invalid_package_size"],
        },
    ),
    (
        "package",
        {"amount": "5", "free_units": -1, "package_size": 0},
        {"free_units": ["invalid_free_units"], "package_size": ["invalid_package_size"]},
    ),
    ("percentage", {}, {"rate": ["invalid_rate"]}),
    (
        "percentage",
        {
            "rate": "1",
            "fixed_amount": "x",
            "free_units_per_events": 0,
            "free_units_per_total_aggregation": "-5",
        },
        {
            "fixed_amount": ["invalid_fixed_amount"],
            "free_units_per_events": ["invalid_free_units_per_events"],
            "free_units_per_total_aggregation": ["invalid_free_units_per_total_aggregation"],
        },
    ),
    (
        "percentage",
        {"rate": "1", "per_transaction_min_amount": "5", "per_transaction_max_amount": "2"},
        {"per_transaction_max_amount": ["per_transaction_max_lower_than_per_transaction_min"]},
    ),
]


@pytest.mark.parametrize(("model", "properties", "details"), INVALID)
def test_invalid_properties_answer_with_lago_style_error_details(
    model: str, properties: dict[str, object], details: dict[str, list[str]]
) -> None:
    charge = CHARGE_MODELS[model]
    with pytest.raises(InvalidChargeProperties) as caught:
        charge.validate(properties)
    assert caught.value.details == details
    with pytest.raises(InvalidChargeProperties):
        charge.price(D(1), properties, events_count=1, per_event_amounts=[D(1)])


def test_percentage_with_free_units_and_no_events_costs_nothing() -> None:
    # A charge added after the period's events: no state, no event amounts, nothing to pay.
    priced = CHARGE_MODELS["percentage"].price(D(0), PERCENTAGE_DOC, events_count=0)
    assert priced.amount == 0


def test_percentage_with_free_units_or_bounds_keeps_the_events_it_reads() -> None:
    assert kept_events("percentage", PERCENTAGE_DOC) == KeptEvents(first=3)
    free_total = {"rate": "1", "free_units_per_total_aggregation": "250"}
    assert kept_events("percentage", free_total) == KeptEvents(until_total=D(250))
    bounded = {"rate": "1", "free_units_per_events": 2, "per_transaction_max_amount": "2"}
    assert kept_events("percentage", bounded) == KeptEvents()
    assert kept_events("percentage", {"rate": "1", "fixed_amount": "1"}) is None
    assert kept_events("percentage", {"rate": "x"}) is None
    assert kept_events("standard", STANDARD_DOC) is None


def test_price_state_feeds_a_kept_sum_event_by_event() -> None:
    period = BillingPeriod(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    state = SumAggregation.initialize(period, keep_events=True)
    for minute, value in enumerate(["200", "100", "100", "50"]):
        state.add(D(value), datetime(2026, 1, 2, 0, minute, tzinfo=UTC), f"t{minute}")
    assert price_state("percentage", PERCENTAGE_DOC, state).amount_cents("USD") == 70
    plain = SumAggregation.initialize(period)
    plain.add(D(450), datetime(2026, 1, 2, tzinfo=UTC), "t")
    assert price_state("standard", {"amount": "1"}, plain).amount == D(450)
