"""weighted_sum_agg: the property's running level, weighted by how long it held in the period.

Each event's value is a change of level (+20 GB, then +10 GB). The result is the sum over
the period of level x seconds held / seconds in the period, so 20 GB held for one day and
30 GB for the last fifteen days of a 31-day month give 15.1612903226 (Lago's own example).
The state keeps every change point rather than a partial sum, because a level's weight
depends on the next change, which another partial state may hold: merging the change points
keeps merge exact and associative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import ClassVar, Self

from billing.aggregations import snapshot
from billing.aggregations.aggregation import (
    EXACT,
    Aggregation,
    EventValue,
    require_aware,
    require_decimal,
)
from billing.aggregations.event_values import numeric_property
from billing.errors import InvalidEvent
from billing.periods import BillingPeriod

_Change = tuple[datetime, str, Decimal]

# Lago ceils the weighted sum at 20 decimal places.
_RESULT_QUANTUM = Decimal("1e-20")


def _microseconds(start: datetime, end: datetime) -> int:
    delta = end - start
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(slots=True)
class WeightedSumAggregation(Aggregation):
    """Change points of the level, plus the level carried in from the previous period."""

    aggregation_type: ClassVar[str] = "weighted_sum_agg"

    period: BillingPeriod
    initial_value: Decimal = Decimal(0)
    changes: list[_Change] = field(default_factory=list)

    @classmethod
    def initialize(cls, period: BillingPeriod, *, initial_value: Decimal = Decimal(0)) -> Self:
        """`initial_value` is the level at the period's start: the previous period's
        `closing_value()` for a recurring metric, 0 for a metered one."""
        return cls(period, initial_value, [])

    @classmethod
    def event_value(cls, properties: Mapping[str, object] | None, field_name: str) -> EventValue:
        return numeric_property(properties, field_name)

    @property
    def events_count(self) -> int:
        return len(self.changes)

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        number = require_decimal(value, self.aggregation_type)
        instant = require_aware(timestamp)
        if not self.period.contains(instant):
            raise InvalidEvent(
                f"{instant.isoformat()} lies outside the period "
                f"[{self.period.start.isoformat()}, {self.period.end.isoformat()})",
                "timestamp",
            )
        self.changes.append((instant, transaction_id, number))

    def merge(self, other: Self) -> Self:
        if self.period != other.period or self.initial_value != other.initial_value:
            raise ValueError("cannot merge weighted sums of different periods or start levels")
        return type(self)(self.period, self.initial_value, [*self.changes, *other.changes])

    def result(self) -> Decimal:
        level = self.initial_value
        weighted = Decimal(0)  # level x microseconds
        since = self.period.start
        for instant, _, change in sorted(self.changes):
            weighted = EXACT.add(weighted, EXACT.multiply(level, _microseconds(since, instant)))
            level = EXACT.add(level, change)
            since = instant
        weighted = EXACT.add(weighted, EXACT.multiply(level, _microseconds(since, self.period.end)))
        average = EXACT.divide(weighted, _microseconds(self.period.start, self.period.end))
        return average.quantize(_RESULT_QUANTUM, rounding=ROUND_CEILING, context=EXACT)

    def closing_value(self) -> Decimal:
        """The level at the period's end: the next period's `initial_value` if recurring."""
        level = self.initial_value
        for _, _, change in self.changes:
            level = EXACT.add(level, change)
        return level

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.aggregation_type,
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "initial_value": str(self.initial_value),
            "changes": [
                [instant.isoformat(), transaction_id, str(change)]
                for instant, transaction_id, change in sorted(self.changes)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
        period = BillingPeriod(
            snapshot.parse_instant(data.get("period_start"), "period_start"),
            snapshot.parse_instant(data.get("period_end"), "period_end"),
        )
        raw = data.get("changes")
        if not isinstance(raw, list):
            raise ValueError(f"snapshot field 'changes' must be a list, got {raw!r}")
        changes: list[_Change] = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 3 or not isinstance(item[1], str):
                raise ValueError(f"a change snapshot must be [timestamp, id, value]: {item!r}")
            changes.append(
                (
                    snapshot.parse_instant(item[0], "changes.timestamp"),
                    item[1],
                    snapshot.parse_decimal(item[2], "changes.value"),
                )
            )
        return cls(
            period, snapshot.parse_decimal(data.get("initial_value"), "initial_value"), changes
        )
