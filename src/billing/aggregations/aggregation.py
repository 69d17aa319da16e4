"""The shape every aggregation shares: a small mergeable state that turns events into units."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import ClassVar, Self, TypeVar

from billing.aggregations.event_values import numeric_property
from billing.periods import BillingPeriod

# Sums and weighted sums run in this context: 60 digits hold any sum of values below 1e30
# with 28 significant digits exactly, so the order of additions (batching, merging) never
# changes a total.
EXACT = Context(prec=60)

EventValue = Decimal | str | None
# One event as `add_many` takes it: `add`'s three arguments.
Added = tuple[EventValue, datetime, str]


class Aggregation(ABC):
    """Running state of one (subscription, charge, period), per Lago aggregation type.

    `add` folds one event in place; `merge` returns a new state combining two partial ones
    (associative, and indifferent to how events were split between them); `result` is the
    period's units. `to_dict`/`from_dict` round-trip through JSON (Decimals as strings).
    """

    __slots__ = ()

    aggregation_type: ClassVar[str]

    @classmethod
    def initialize(cls, period: BillingPeriod) -> Self:
        """An empty state for the period (most states do not depend on it)."""
        return cls()

    @classmethod
    def event_value(cls, properties: Mapping[str, object] | None, field_name: str) -> EventValue:
        """What `add` needs from an event's properties (by default the numeric property
        `field_name`); raises InvalidEvent if unusable."""
        return numeric_property(properties, field_name)

    @abstractmethod
    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        """Fold one event's value in."""

    def add_many(self, events: Sequence[Added]) -> None:
        """Fold several events in, in order: the same state as `add` for each in turn
        (types whose events do not interact fold them at once)."""
        for value, timestamp, transaction_id in events:
            self.add(value, timestamp, transaction_id)

    @abstractmethod
    def merge(self, other: Self) -> Self:
        """A new state holding both states' events; neither operand changes."""

    @abstractmethod
    def result(self) -> Decimal:
        """The period's units so far."""

    @property
    @abstractmethod
    def events_count(self) -> int:
        """How many events were folded in."""

    @abstractmethod
    def to_dict(self) -> dict[str, object]:
        """A JSON-safe snapshot (str, int, list and dict only)."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        """The state a `to_dict` snapshot describes."""


# What max_agg and latest_agg keep the greatest of: a value, or a (timestamp,
# transaction_id, value) key.
_Key = TypeVar("_Key", Decimal, tuple[datetime, str, Decimal])


def greatest(kept: _Key | None, candidate: _Key | None) -> _Key | None:
    """The greater of two optional keys (None: no event yet); `kept` on a tie, so that a
    state changes only for a strictly greater one."""
    if kept is None or candidate is None:
        return candidate if kept is None else kept
    return candidate if candidate > kept else kept


def require_decimal(value: EventValue, aggregation_type: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{aggregation_type} adds Decimal values, not {type(value).__name__}")
    return value


def require_aware(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is UTC:  # the common case (every event the aggregator reads)
        return timestamp
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError(f"event timestamps must be timezone-aware, got {timestamp!r}")
    return timestamp.astimezone(UTC)
