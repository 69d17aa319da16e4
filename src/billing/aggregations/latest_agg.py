"""latest_agg: the value of the period's most recent event (0 without events)."""

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

# (timestamp, transaction_id, value): the greatest key is the latest event. Events with the
# same timestamp are ordered by transaction_id, then value, so every replica and every merge
# order picks the same one (Lago leaves that tie to the database's row order).
_Latest = tuple[datetime, str, Decimal]


@dataclass(slots=True)
class LatestAggregation(Aggregation):
    """Keeps only the latest event's key and value."""

    aggregation_type: ClassVar[str] = "latest_agg"

    latest: _Latest | None = None
    events_count: int = 0

    def add(self, value: EventValue, timestamp: datetime, transaction_id: str = "") -> None:
        candidate = (
            require_aware(timestamp),
            transaction_id,
            require_decimal(value, self.aggregation_type),
        )
        self.latest = greatest(self.latest, candidate)
        self.events_count += 1

    def merge(self, other: Self) -> Self:
        latest = greatest(self.latest, other.latest)
        return type(self)(latest, self.events_count + other.events_count)

    def result(self) -> Decimal:
        return Decimal(0) if self.latest is None else self.latest[2]

    def to_dict(self) -> dict[str, object]:
        latest: dict[str, object] | None = None
        if self.latest is not None:
            timestamp, transaction_id, value = self.latest
            latest = {
                "timestamp": timestamp.isoformat(),
                "transaction_id": transaction_id,
                "value": str(value),
            }
        return {"type": self.aggregation_type, "latest": latest, "events_count": self.events_count}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        snapshot.require_type(data, cls.aggregation_type)
        raw = data.get("latest")
        latest: _Latest | None = None
        if raw is not None:
            if not isinstance(raw, Mapping):
                raise ValueError(f"snapshot field 'latest' must be an object, got {raw!r}")
            latest = (
                snapshot.parse_instant(raw.get("timestamp"), "latest.timestamp"),
                snapshot.read_str(raw, "transaction_id"),
                snapshot.parse_decimal(raw.get("value"), "latest.value"),
            )
        return cls(latest, snapshot.read_int(data, "events_count"))
