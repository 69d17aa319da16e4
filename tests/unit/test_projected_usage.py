"""Projected usage carries counts and sums to the period's end at their pace so far and
prices them again; levels (max) stay as they are; a charge that needs every event's value
has its amount carried at the same pace."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store.projected_usage import project


def _line(charge: str, model: str, aggregation: str, units: str, events: int, cents: int) -> Any:
    return {
        "units": units,
        "events_count": events,
        "amount_cents": cents,
        "amount_currency": "EUR",
        "charge": {"lago_id": charge, "charge_model": model},
        "billable_metric": {"code": charge, "aggregation_type": aggregation},
    }


CURRENT = {
    "from_datetime": "2026-11-01T00:00:00Z",
    "to_datetime": "2026-12-01T00:00:00Z",
    "amount_cents": 3650,
    "charges_usage": [
        _line("calls", "standard", "count_agg", "120", 120, 600),
        _line("seats", "package", "max_agg", "13", 3, 3000),
        _line("volume", "percentage", "sum_agg", "10.5", 2, 50),
    ],
}
PROPERTIES: dict[str, Any] = {
    "calls": {"amount": "0.05"},
    "seats": {"amount": "10", "package_size": 5, "free_units": 2},
    "volume": {"rate": "5", "per_transaction_max_amount": "0.4"},
}


def _by_charge(projected: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {
        line["charge"]["lago_id"]: (line["projected_units"], line["projected_amount_cents"])
        for line in projected["charges_usage"]
    }


def test_half_way_through_the_period() -> None:
    projected = project(CURRENT, PROPERTIES, datetime(2026, 11, 16, tzinfo=UTC))
    assert _by_charge(projected) == {
        "calls": ("240", 1200),  # twice the calls, priced again
        "seats": ("13", 3000),  # a level: as it is
        "volume": ("21", 100),  # bounded per transaction: its amount at the same pace
    }
    assert projected["projected_amount_cents"] == 4300
    assert projected["amount_cents"] == 3650, "the current figures stay"


def test_a_charge_gone_from_the_catalog_and_a_period_not_started() -> None:
    projected = project(CURRENT, {}, datetime(2026, 11, 11, tzinfo=UTC))  # a third passed
    assert _by_charge(projected)["calls"] == ("360", 1800)
    before = project(CURRENT, PROPERTIES, datetime(2026, 10, 31, tzinfo=UTC))
    assert _by_charge(before)["calls"] == ("120", 600), "nothing to pace yet"
