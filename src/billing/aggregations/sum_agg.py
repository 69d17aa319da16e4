"""sum_agg: the total of the metric's property over the period's events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce
from typing import ClassVar, Self

from billing.aggregations import snapshot
from billing.aggregations.aggregation import (
    EXACT,
    Added,
    Aggregation,
    EventValue,
    require_aware,
    require_decimal,
)
from billing.periods import BillingPeriod

# One event as the percentage charge model needs it: (timestamp, transaction_id, value).
EventAmount = tuple[datetime, str, Decimal]

_ZERO = Decimal(0)
# A state keeping only a prefix of its events trims the rest once it holds this many.
_COMPACT_AT = 512


@dataclass(frozen=True, slots=True)
class KeptEvents:
    """Which of a period's events a charge prices one by one, in time order: the first
    `first`, or (without it) those up to and including the one whose running total exceeds
    `until_total`, or (without either) all of them. The events after that prefix matter only
    through their count and total."""

    first: int | None = None
    until_total: Decimal | None = None

    def prefix_length(self, values: Sequence[Decimal]) -> int:
        """How many of `values` (in time order) the prefix holds."""
        if self.first is not None:
            return min(self.first, len(values))
        if self.until_total is None:
            return len(values)
        running = _ZERO
        for index, value in enumerate(values):
            running = EXACT.add(running, value)
            if running > self.until_total:
                return index + 1
        return len(values)


@dataclass(slots=True)
class SumAggregation(Aggregation):
    """Keeps the running total, and optionally each event's value.

    The percentage charge model's free units, free events and per-transaction minimum and
    maximum are decided event by event, in time order; a charge using them keeps its events
    (`initialize(keep_events=True)`, or `keep_events()` on a restored state, also one that
    did not keep them: a charge that gained those terms mid-period) so that
    `event_amounts()` can feed `price()`.

    Only the prefix the charge reads (`KeptEvents`) is kept one by one: later events are
    folded into a tail (their count and total), so the state stays small however many
    transactions a period has. Events counted before the state kept any stand first in
    `event_amounts()` as one value, the tail last as one value.
    """

    aggregation_type: ClassVar[str] = "sum_agg"

    total: Decimal = _ZERO
    events_count: int = 0
    events: list[EventAmount] | None = None
    tail_count: int = 0
    tail_total: Decimal = _ZERO
    kept: KeptEvents = field(default=KeptEvents(), compare=False)

    @classmethod
    def initialize(cls, period: BillingPeriod, *, keep_events: bool = False) -> Self:
        return cls(_ZERO, 0, [] if keep_events else None)

    def keep_events(self, kept: KeptEvents | None = None) -> None:
        """Keep the events of `kept` (all by default) one by one from now on."""
        if self.events is None:
            self.events = []
        self.kept = kept or KeptEvents()

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        number = require_decimal(value, self.aggregation_type)
        instant = require_aware(timestamp)
        self.total = EXACT.add(self.total, number)
        self.events_count += 1
        if self.events is not None:
            self.events.append((instant, transaction_id, number))
            if len(self.events) >= _COMPACT_AT:
                self.compact()

    def add_many(self, events: Sequence[Added]) -> None:
        if self.events is not None:  # kept one by one, compacted as they come
            Aggregation.add_many(self, events)  # (a slots dataclass: no zero-argument super)
            return
        # (the checks inline for the common case, a Decimal at a UTC instant: this loop runs
        # once per event the aggregator folds)
        total, add = self.total, EXACT.add
        for value, timestamp, _ in events:
            if timestamp.tzinfo is not UTC:
                require_aware(timestamp)
            total = add(
                total,
                value if type(value) is Decimal else require_decimal(value, self.aggregation_type),
            )
        self.total = total
        self.events_count += len(events)

    def compact(self) -> None:
        """Fold the kept events past the prefix the charge reads into the tail."""
        if not self.events:
            return
        self.events.sort()
        length = self.kept.prefix_length([value for _, _, value in self.events])
        for _, _, value in self.events[length:]:
            self.tail_total = EXACT.add(self.tail_total, value)
            self.tail_count += 1
        del self.events[length:]

    def merge(self, other: Self) -> Self:
        # Each state's tail holds only events later than its own prefix, so the earliest
        # events of both are all among their kept events.
        events = None
        if self.events is not None or other.events is not None:
            events = [*(self.events or ()), *(other.events or ())]
        return type(self)(
            EXACT.add(self.total, other.total),
            self.events_count + other.events_count,
            events,
            self.tail_count + other.tail_count,
            EXACT.add(self.tail_total, other.tail_total),
        )

    def result(self) -> Decimal:
        return self.total

    def event_amounts(self) -> list[Decimal]:
        """Every kept event's value in time order (ties by transaction_id), for percentage
        pricing; the events counted before any was kept come first, as their total, and the
        tail last, as its total."""
        if self.events is None:
            raise ValueError("this sum was initialized without keep_events=True")
        kept = [value for _, _, value in sorted(self.events)]
        amounts = list(kept)
        if self.events_count > len(kept) + self.tail_count:
            earlier = reduce(EXACT.subtract, [*kept, self.tail_total], self.total)
            amounts.insert(0, earlier)
        if self.tail_count:
            amounts.append(self.tail_total)
        return amounts

    def to_dict(self) -> dict[str, object]:
        written: dict[str, object] = {
            "type": self.aggregation_type,
            "total": str(self.total),
            "events_count": self.events_count,
        }
        if self.events is not None:
            self.compact()
            written["events"] = [
                [timestamp.isoformat(), transaction_id, str(value)]
                for timestamp, transaction_id, value in self.events
            ]
        if self.tail_count:
            written["tail"] = [self.tail_count, str(self.tail_total)]
        return written

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
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
                        snapshot.parse_instant(item[0], "events.timestamp"),
                        snapshot.read_str({"transaction_id": item[1]}, "transaction_id"),
                        snapshot.parse_decimal(item[2], "events.value"),
                    )
                )
        tail_count, tail_total = 0, _ZERO
        tail = data.get("tail")
        if tail is not None:
            if not isinstance(tail, list) or len(tail) != 2:
                raise ValueError(f"snapshot field 'tail' must be [count, total], got {tail!r}")
            tail_count = snapshot.read_int({"tail": tail[0]}, "tail")
            tail_total = snapshot.parse_decimal(tail[1], "tail.total")
        total = snapshot.parse_decimal(data.get("total"), "total")
        return cls(total, snapshot.read_int(data, "events_count"), events, tail_count, tail_total)
