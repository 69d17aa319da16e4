"""Aggregations: Lago's examples, event values, and JSON snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.aggregations import (
    AGGREGATIONS,
    CountAggregation,
    LatestAggregation,
    MaxAggregation,
    SumAggregation,
    UniqueCountAggregation,
    WeightedSumAggregation,
    aggregation_from_dict,
    numeric_property,
    unique_property,
)
from billing.errors import InvalidEvent
from billing.periods import BillingPeriod

MARCH_2022 = BillingPeriod(datetime(2022, 3, 1, tzinfo=UTC), datetime(2022, 4, 1, tzinfo=UTC))


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2022, 3, day, hour, tzinfo=UTC)


def test_registry_is_keyed_by_lagos_aggregation_types() -> None:
    assert sorted(AGGREGATIONS) == sorted(
        [
            "count_agg",
            "sum_agg",
            "max_agg",
            "unique_count_agg",
            "latest_agg",
            "weighted_sum_agg",
        ]
    )
    for name, cls in AGGREGATIONS.items():
        assert cls.aggregation_type == name


def test_weighted_sum_reproduces_lagos_gb_seconds_example() -> None:
    state = WeightedSumAggregation.initialize(MARCH_2022)
    state.add(Decimal(20), at(16), "transaction_1")
    state.add(Decimal(10), at(17), "transaction_2")
    # (20 / 2678400) x 86400 + (30 / 2678400) x 1296000 = 15.1612903226
    assert state.result().quantize(Decimal("1e-10")) == Decimal("15.1612903226")
    assert state.closing_value() == Decimal(30)
    assert state.events_count == 2


@pytest.mark.parametrize(
    ("initial", "changes", "expected"),
    [
        (Decimal(0), [], Decimal(0)),
        (Decimal(10), [], Decimal(10)),
        (Decimal(0), [(1, Decimal(31))], Decimal(31)),
        (Decimal(0), [(1, Decimal(31)), (1, Decimal(-31))], Decimal(0)),
        (Decimal(4), [(16, Decimal(-4))], Decimal(4) * 15 / 31),
    ],
)
def test_weighted_sum_levels(
    initial: Decimal, changes: list[tuple[int, Decimal]], expected: Decimal
) -> None:
    state = WeightedSumAggregation.initialize(MARCH_2022, initial_value=initial)
    for day, change in changes:
        state.add(change, at(day))
    assert abs(state.result() - expected) < Decimal("1e-19")


def test_weighted_sum_refuses_events_outside_its_period() -> None:
    state = WeightedSumAggregation.initialize(MARCH_2022)
    with pytest.raises(InvalidEvent) as caught:
        state.add(Decimal(1), datetime(2022, 4, 1, tzinfo=UTC))
    assert caught.value.field == "timestamp"


@pytest.mark.parametrize(
    ("cls", "values", "expected"),
    [
        (CountAggregation, [None, None, None], Decimal(3)),
        (CountAggregation, [], Decimal(0)),
        (SumAggregation, [Decimal("1.5"), Decimal("2.25"), Decimal(-1)], Decimal("2.75")),
        (SumAggregation, [], Decimal(0)),
        (MaxAggregation, [Decimal(3), Decimal(7), Decimal(5)], Decimal(7)),
        (MaxAggregation, [Decimal(-3), Decimal(-7)], Decimal(-3)),
        (MaxAggregation, [], Decimal(0)),
        (UniqueCountAggregation, ["a", "b", "a", "1"], Decimal(3)),
        (UniqueCountAggregation, [], Decimal(0)),
        (LatestAggregation, [Decimal(3), Decimal(9), Decimal(5)], Decimal(5)),
        (LatestAggregation, [], Decimal(0)),
    ],
)
def test_results(cls: type, values: list[Decimal | str | None], expected: Decimal) -> None:
    state = cls.initialize(MARCH_2022)
    for day, value in enumerate(values, start=1):
        state.add(value, at(day), f"tx{day}")
    assert state.result() == expected
    assert state.events_count == len(values)


def test_latest_breaks_timestamp_ties_by_transaction_id() -> None:
    first = LatestAggregation.initialize(MARCH_2022)
    first.add(Decimal(1), at(5), "b")
    first.add(Decimal(2), at(5), "a")
    second = LatestAggregation.initialize(MARCH_2022)
    second.add(Decimal(2), at(5), "a")
    second.add(Decimal(1), at(5), "b")
    assert first.result() == second.result() == Decimal(1)


def test_sum_keeps_event_amounts_in_time_order_when_asked() -> None:
    state = SumAggregation.initialize(MARCH_2022, keep_events=True)
    state.add(Decimal(50), at(4), "t4")
    state.add(Decimal(200), at(1), "t1")
    state.add(Decimal(100), at(2), "t2")
    assert state.event_amounts() == [Decimal(200), Decimal(100), Decimal(50)]
    plain = SumAggregation.initialize(MARCH_2022)
    with pytest.raises(ValueError):
        plain.event_amounts()


def test_sum_that_starts_keeping_events_late_puts_the_earlier_total_first() -> None:
    # A charge that gains free units mid-period: the events counted before stand as one.
    state = SumAggregation.initialize(MARCH_2022)
    state.add(Decimal(30), at(1), "t1")
    state.add(Decimal(20), at(2), "t2")
    state.keep_events()
    state.add(Decimal(5), at(3), "t3")
    assert state.events_count == 3
    assert state.event_amounts() == [Decimal(50), Decimal(5)]
    restored = SumAggregation.from_dict(state.to_dict())
    assert restored.event_amounts() == [Decimal(50), Decimal(5)]
    plain = SumAggregation.initialize(MARCH_2022)
    plain.add(Decimal(7), at(4), "t4")
    merged = plain.merge(restored)
    assert (merged.result(), merged.events_count) == (Decimal(62), 4)
    assert merged.event_amounts() == [Decimal(57), Decimal(5)]


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        ({"gb": 10}, Decimal(10)),
        ({"gb": 0.1}, Decimal("0.1")),
        ({"gb": 1e20}, Decimal("1E+20")),
        ({"gb": "12.50"}, Decimal("12.50")),
        ({"gb": " 3 "}, Decimal(3)),
        ({"gb": "-4.5"}, Decimal("-4.5")),
        ({"gb": "1e3"}, Decimal(1000)),
        ({"gb": Decimal("2.5")}, Decimal("2.5")),
    ],
)
def test_numeric_property_reads_ints_floats_and_numeric_strings(
    properties: dict[str, object], value: Decimal
) -> None:
    assert numeric_property(properties, "gb") == value


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        (None, "missing"),
        ({}, "missing"),
        ({"other": 1}, "missing"),
        ({"gb": None}, "null"),
        ({"gb": True}, "boolean"),
        ({"gb": "ten"}, "not a number"),
        ({"gb": "1_000"}, "not a number"),
        ({"gb": "NaN"}, "not a number"),
        ({"gb": "Infinity"}, "not a number"),
        ({"gb": ""}, "not a number"),
        ({"gb": float("nan")}, "NaN"),
        ({"gb": float("inf")}, "infinite"),
        ({"gb": Decimal("NaN")}, "finite"),
        ({"gb": [1]}, "list"),
        ({"gb": {"v": 1}}, "dict"),
        ({"gb": 10**31}, "too large"),
    ],
)
def test_numeric_property_says_precisely_why_not(
    properties: dict[str, object] | None, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        numeric_property(properties, "gb")
    assert reason in caught.value.reason
    assert caught.value.field == "properties.gb"


@pytest.mark.parametrize(
    ("value", "key"),
    [("abc", "abc"), (1, "1"), ("1", "1"), (1.5, "1.5"), (True, "true")],
)
def test_unique_property_uses_lagos_json_text(value: object, key: str) -> None:
    assert unique_property({"user": value}, "user") == key


@pytest.mark.parametrize("properties", [{}, {"user": None}, {"user": [1]}, {"user": {}}])
def test_unique_property_refuses_missing_and_composite_values(
    properties: dict[str, object],
) -> None:
    with pytest.raises(InvalidEvent):
        unique_property(properties, "user")


def test_count_reads_no_property() -> None:
    assert CountAggregation.event_value(None, "") is None


@pytest.mark.parametrize(
    "snapshot",
    [
        {"type": "sum_agg", "total": 1, "events_count": 1},
        {"type": "count_agg", "events_count": -1},
        {"type": "max_agg", "maximum": "x", "events_count": 1},
        {"type": "nope"},
        {"type": "weighted_sum_agg", "period_start": "2022-03-01T00:00:00"},
    ],
)
def test_malformed_snapshots_are_refused(snapshot: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        aggregation_from_dict(snapshot)


def test_snapshots_are_json() -> None:
    state = WeightedSumAggregation.initialize(MARCH_2022, initial_value=Decimal("1.5"))
    state.add(Decimal(2), at(3), "t")
    text = json.dumps(state.to_dict())
    again = aggregation_from_dict(json.loads(text))
    assert again == state
