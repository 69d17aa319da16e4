"""sum_agg: the total of the metric's property over the period's events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import reduce
from typing import ClassVar, Self

from billing.aggregations.aggregation import (
    EXACT,
    Aggregation,
    EventValue,
    parse_decimal,
    parse_instant,
    read_int,
    read_str,
    require_aware,
    require_decimal,
    require_type,
)
from billing.aggregations.event_values import numeric_property
from billing.periods import BillingPeriod

# One event as the percentage charge model needs it: (timestamp, transaction_id, value).
EventAmount = tuple[datetime, str, Decimal]


@dataclass(slots=True)
class SumAggregation(Aggregation):
    """Keeps the running total, and optionally every event's value.

    The percentage charge model's free units, free events and per-transaction minimum and
    maximum are decided event by event, in time order; a charge using them initializes its
    state with `keep_events=True` (or calls `keep_events()` on one restored without them, when
    a charge gains those terms mid-period) so that `event_amounts()` can feed `price()`.
    Events counted before the state kept them are the difference between `events_count` and
    the kept events: their total stands first in `event_amounts()`, as one value.
    """

    aggregation_type: ClassVar[str] = "sum_agg"

    total: Decimal = Decimal(0)
    events_count: int = 0
    events: list[EventAmount] | None = None

    @classmethod
    def initialize(cls, period: BillingPeriod, *, keep_events: bool = False) -> Self:
        return cls(Decimal(0), 0, [] if keep_events else None)

    @classmethod
    def event_value(cls, properties: Mapping[str, object] | None, field_name: str) -> EventValue:
        return numeric_property(properties, field_name)

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        number = require_decimal(value, self.aggregation_type)
        instant = require_aware(timestamp)
        self.total = EXACT.add(self.total, number)
        self.events_count += 1
        if self.events is not None:
            self.events.append((instant, transaction_id, number))

    def keep_events(self) -> None:
        """Keep every event folded in from now on (a no-op when already keeping them)."""
        if self.events is None:
            self.events = []

    def merge(self, other: Self) -> Self:
        events = None
        if self.events is not None or other.events is not None:
            events = [*(self.events or ()), *(other.events or ())]
        return type(self)(
            EXACT.add(self.total, other.total), self.events_count + other.events_count, events
        )

    def result(self) -> Decimal:
        return self.total

    def event_amounts(self) -> list[Decimal]:
        """Every event's value in time order (ties by transaction_id), for percentage pricing;
        the events counted before they were kept come first, as their total."""
        if self.events is None:
            raise ValueError("this sum was initialized without keep_events=True")
        kept = [value for _, _, value in sorted(self.events)]
        if len(kept) == self.events_count:
            return kept
        return [EXACT.subtract(self.total, reduce(EXACT.add, kept, Decimal(0))), *kept]

    def to_dict(self) -> dict[str, object]:
        snapshot: dict[str, object] = {
            "type": self.aggregation_type,
            "total": str(self.total),
            "events_count": self.events_count,
        }
        if self.events is not None:
            snapshot["events"] = [
                [timestamp.isoformat(), transaction_id, str(value)]
                for timestamp, transaction_id, value in sorted(self.events)
            ]
        return snapshot

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        require_type(data, cls.aggregation_type)
        events: list[EventAmount] | None = None
        raw = data.get("events")
        if raw is not None:
            if not isinstance(raw, list):
                raise ValueError(f"snapshot field 'events' must be a list, got {raw!r}")
            events = []
            for item in raw:
                if not isinstance(item, list) or len(item) != 3:
                    raise ValueError(f"an event snapshot must be [timestamp, id, value]: {item!r}")
                events.append(
                    (
                        parse_instant(item[0], "events.timestamp"),
                        read_str({"transaction_id": item[1]}, "transaction_id"),
                        parse_decimal(item[2], "events.value"),
                    )
                )
        total = parse_decimal(data.get("total"), "total")
        return cls(total, read_int(data, "events_count"), events)
