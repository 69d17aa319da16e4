"""A subscription's ledger: the one table value that holds everything the aggregator knows
about one (organization, external subscription), so that every change to it is a single
changelog record, applied whole or not at all.

The value is plain JSON:

```
{
  "p": 2,                               source partition of the subscription's events
  "applied": {"2": 1885185},            highest source position applied, per partition
                                        (`meterflow.event_records.position`)
  "periods": {"<start>": {"end": "<end>", "charges": {"<charge id>": <state>}}},
  "closed_until": "<end of the last closed period>" | null,
  "final": false,                       true once the termination period is closed
  "late": {"<start>": {"end": ..., "charges": {...}}},   late usage of closed periods,
                                        sent by the next tick as `late_usage` messages
  "held": [{"p": 2, "o": 17, "i": 3 | null, "ts": <ms>, "key": ..., "value": "<wire event>"}],
  "outbox": [{"id": 4, "topic": "periods_closed" | "dead_letter", "key": ..., "value": ...}],
  "seq": 4,
  "requeued": [[2, 17408]]              dead-lettered events whose requeued copy counted
}
```

Times are UTC ISO 8601 strings; `<state>` is the aggregation state's `to_dict()`.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from aggregator.catalog_view import ChargeTerms
from aggregator.domain import Domain, UsageState

PERIODS = "periods"
LATE = "late"


def ledger_key(organization_id: str, external_subscription_id: str) -> str:
    """The table key of a subscription's ledger (the unit separator never occurs in ids)."""
    return f"{organization_id}\x1f{external_subscription_id}"


@lru_cache(maxsize=4096)
def iso(instant: datetime) -> str:
    """The instant as ISO 8601; cached, because a batch formats the same few instants (its
    `now`, period bounds, marker expiries) for every event."""
    return instant.isoformat()


@lru_cache(maxsize=4096)
def instant(raw: str) -> datetime:
    """The instant of an ISO 8601 string of a ledger (cached like `iso`)."""
    return datetime.fromisoformat(raw)


def new_ledger_value(partition: int) -> dict[str, Any]:
    return {
        "p": partition,
        "applied": {},
        "periods": {},
        "closed_until": None,
        "final": False,
        "late": {},
        "held": [],
        "outbox": [],
        "seq": 0,
    }


class Ledger:
    """A ledger value being changed in memory; `seal()` gives the value to write back.

    Aggregation states are restored once and kept live while a batch folds events into
    them, then serialised once: a batch writes each touched ledger exactly once.
    """

    __slots__ = ("_states", "applied_at", "value")

    def __init__(self, value: dict[str, Any] | None, partition: int) -> None:
        # `value` is the caller's own (a store's `get` decodes afresh): changed in place, it
        # changes nothing stored until it is put back, so a batch failing half-way leaves
        # the stored value as it was.
        if value is None:
            value = new_ledger_value(partition)
        else:
            value.setdefault("final", False)  # (absent from ledgers written before it)
        self.value: dict[str, Any] = value
        self._states: dict[tuple[str, datetime, str], UsageState] = {}
        # value["applied"] by int partition: read for every event of a batch
        self.applied_at = {int(p): int(at) for p, at in self.value["applied"].items()}

    @property
    def partition(self) -> int:
        return int(self.value["p"])

    def applied(self, partition: int) -> int:
        return self.applied_at.get(partition, -1)

    def mark_applied(self, partition: int, at: int) -> None:
        """Record `at` as applied (into the value by `seal`: this runs for every event)."""
        if at > self.applied_at.get(partition, -1):
            self.applied_at[partition] = at

    @property
    def closed_until(self) -> datetime | None:
        raw = self.value["closed_until"]
        return None if raw is None else instant(raw)

    def state(
        self,
        domain: Domain,
        bucket: str,
        start: datetime,
        end: datetime,
        charge: ChargeTerms,
    ) -> UsageState:
        """The live aggregation state of one charge in one period of `bucket`."""
        ident = (bucket, start, charge.charge_id)
        live = self._states.get(ident)
        if live is None:
            period = self.value[bucket].setdefault(iso(start), {"end": iso(end), "charges": {}})
            # (the ledger's own value: the state may keep its lists and dicts)
            live = domain.new_state(charge, start, end, period["charges"].get(charge.charge_id))
            self._states[ident] = live
        return live

    def seal(self) -> dict[str, Any]:
        """Serialise the live states and the applied positions into the value and return it."""
        self.value["applied"] = {str(p): at for p, at in self.applied_at.items()}
        for (bucket, start, charge_id), live in self._states.items():
            period = self.value[bucket].get(iso(start))
            if period is not None:
                period["charges"][charge_id] = live.to_dict()
        self._states.clear()
        return self.value

    def enqueue(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Queue a message to produce; it leaves the outbox only once the broker has it."""
        self.value["seq"] += 1
        self.value["outbox"].append(
            {"id": self.value["seq"], "topic": topic, "key": key, "value": value}
        )

    def take_requeue(self, original: tuple[int, int]) -> bool:
        """Record that the copy requeued from the dead-lettered event at (partition, position)
        `original` is counted; False if one already was (`requeued` in the value)."""
        taken = self.value.setdefault("requeued", [])
        if list(original) in taken:
            return False
        taken.append(list(original))
        return True

    def forget_sent(self, ids: set[int]) -> None:
        self.value["outbox"] = [m for m in self.value["outbox"] if m["id"] not in ids]
