"""unique_count_agg: how many distinct values of the metric's property the period saw."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Self

from billing.aggregations import snapshot
from billing.aggregations.aggregation import Aggregation, EventValue, require_aware
from billing.aggregations.event_values import unique_property


@dataclass(slots=True)
class UniqueCountAggregation(Aggregation):
    """Keeps the set of values seen (as Lago's JSON text of each), so merges stay exact.

    Lago's `operation_type: remove` for recurring metrics is not modelled: every event adds.
    """

    aggregation_type: ClassVar[str] = "unique_count_agg"

    values: set[str] = field(default_factory=set)
    events_count: int = 0

    @classmethod
    def event_value(cls, properties: Mapping[str, object] | None, field_name: str) -> EventValue:
        return unique_property(properties, field_name)

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError(f"unique_count_agg adds str values, not {type(value).__name__}")
        require_aware(timestamp)
        self.values.add(value)
        self.events_count += 1

    def merge(self, other: Self) -> Self:
        return type(self)(self.values | other.values, self.events_count + other.events_count)

    def result(self) -> Decimal:
        return Decimal(len(self.values))

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.aggregation_type,
            "values": sorted(self.values),
            "events_count": self.events_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
        raw = data.get("values")
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ValueError(f"snapshot field 'values' must be a list of strings, got {raw!r}")
        return cls({str(v) for v in raw}, snapshot.read_int(data, "events_count"))
