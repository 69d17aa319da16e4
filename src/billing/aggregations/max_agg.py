"""max_agg: the largest value of the metric's property in the period (0 without events)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Self

from billing.aggregations import snapshot
from billing.aggregations.aggregation import (
    Aggregation,
    EventValue,
    greatest,
    require_aware,
    require_decimal,
)


@dataclass(slots=True)
class MaxAggregation(Aggregation):
    """Keeps the maximum seen; None until the first event."""

    aggregation_type: ClassVar[str] = "max_agg"

    maximum: Decimal | None = None
    events_count: int = 0

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        number = require_decimal(value, self.aggregation_type)
        require_aware(timestamp)
        self.maximum = greatest(self.maximum, number)
        self.events_count += 1

    def merge(self, other: Self) -> Self:
        maximum = greatest(self.maximum, other.maximum)
        return type(self)(maximum, self.events_count + other.events_count)

    def result(self) -> Decimal:
        # Lago answers 0 for a period without events.
        return Decimal(0) if self.maximum is None else self.maximum

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.aggregation_type,
            "maximum": None if self.maximum is None else str(self.maximum),
            "events_count": self.events_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
        raw = data.get("maximum")
        maximum = None if raw is None else snapshot.parse_decimal(raw, "maximum")
        return cls(maximum, snapshot.read_int(data, "events_count"))
