"""count_agg: the number of events in the period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar, Self

from billing.aggregations import snapshot
from billing.aggregations.aggregation import Added, Aggregation, EventValue, require_aware


@dataclass(slots=True)
class CountAggregation(Aggregation):
    """Counts events; their properties are never read."""

    aggregation_type: ClassVar[str] = "count_agg"

    events_count: int = 0

    @classmethod
    def event_value(cls, properties: Mapping[str, object] | None, field_name: str) -> EventValue:
        return None

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        require_aware(timestamp)
        self.events_count += 1

    def add_many(self, events: Sequence[Added]) -> None:
        for _, timestamp, _ in events:
            if timestamp.tzinfo is not UTC:  # (the common case checked inline)
                require_aware(timestamp)
        self.events_count += len(events)

    def merge(self, other: Self) -> Self:
        return type(self)(self.events_count + other.events_count)

    def result(self) -> Decimal:
        return Decimal(self.events_count)

    def to_dict(self) -> dict[str, object]:
        return {"type": self.aggregation_type, "events_count": self.events_count}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
        return cls(snapshot.read_int(data, "events_count"))
