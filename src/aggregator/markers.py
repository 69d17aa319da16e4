"""Dedupe markers: which event (partition, position) first carried each transaction id of a
subscription, kept until its period is closed and the late window has passed.

Markers are stored in segments: one table value per (subscription, source partition,
batch) holding the markers that batch set, so a batch writes one changelog record per
subscription it touched instead of one per event; at most `SEGMENT_LIMIT` markers each, so
that a record stays well under Kafka's 1 MB message limit when one subscription has a whole
batch of packs (100,000 events) to itself. A segment is one record, applied whole
or not at all after a crash, like a ledger. Lookups go through an in-memory index of every
segment, rebuilt from the table after recovery or a rebalance; expiry goes through a heap of
segments by expiry, so it costs what expires, not what is held.

Segment value: `{"p": partition, "exp": "<latest expiry>", "m": {"<txn>": [position, "<expiry>"]}}`,
where a position is `meterflow.event_records.position(offset, index in the record)`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

from aggregator.ledger import iso
from aggregator.store import PartitionedStore

SEGMENT_LIMIT = 2_000  # markers per segment: about 100 bytes each once encoded


@dataclass(slots=True)
class NewMarker:
    ledger_key: str
    transaction_id: str
    partition: int
    position: int
    expires: str  # ISO 8601 UTC: those strings compare in time order


class DedupeMarkers:
    def __init__(self, store: PartitionedStore) -> None:
        self.store = store
        # marker key -> (partition, position, expiry)
        self._index: dict[str, tuple[int, int, str]] | None = None
        self._segments_seen = -1
        # (expiry, segment key) of every segment written or recovered
        self._expiry: list[tuple[str, str]] = []

    def invalidate(self) -> None:
        """The table changed underneath (recovery, rebalance): rebuild before next use."""
        self._index = None

    def _ensured(self) -> dict[str, tuple[int, int, str]]:
        if self._index is None or len(self.store) != self._segments_seen:
            index: dict[str, tuple[int, int, str]] = {}
            expiry: list[tuple[str, str]] = []
            for key, segment in self.store.items():
                expiry.append((segment["exp"], key))
                prefix = key.rsplit("\x1f", 2)[0]
                for txn, (at, expires) in segment["m"].items():
                    _remember(index, f"{prefix}\x1f{txn}", segment["p"], at, expires)
            heapq.heapify(expiry)
            self._index, self._expiry = index, expiry
            self._segments_seen = len(self.store)
        return self._index

    def get(self, marker_key: str) -> tuple[int, int] | None:
        """(partition, position) of the event that set the marker, or None."""
        found = self._ensured().get(marker_key)
        return None if found is None else (found[0], found[1])

    def write(self, markers: list[NewMarker]) -> None:
        """Store a batch's new markers, one segment per (subscription, partition) and
        `SEGMENT_LIMIT` markers."""
        index = self._ensured()
        segments: dict[tuple[str, int], list[NewMarker]] = {}
        for marker in markers:
            segments.setdefault((marker.ledger_key, marker.partition), []).append(marker)
        for (ledger_key, partition), found in segments.items():
            found.sort(key=lambda m: m.position)  # so each segment's range is its own
            for start in range(0, len(found), SEGMENT_LIMIT):
                items = found[start : start + SEGMENT_LIMIT]
                # First and last position: a replay that splits batches differently writes
                # new segments rather than overwriting an older one with fewer markers.
                first, last = min(m.position for m in items), max(m.position for m in items)
                key = f"{ledger_key}\x1f{partition}\x1f{first}-{last}"
                expires = max(m.expires for m in items)
                self.store.put(
                    partition,
                    key,
                    {
                        "p": partition,
                        "exp": expires,
                        "m": {m.transaction_id: [m.position, m.expires] for m in items},
                    },
                )
                heapq.heappush(self._expiry, (expires, key))
            for m in found:
                key = f"{ledger_key}\x1f{m.transaction_id}"
                _remember(index, key, partition, m.position, m.expires)
        self._segments_seen = len(self.store)

    def expire(self, now: datetime, owned: set[int]) -> int:
        """Delete the segments of owned partitions whose markers have all expired."""
        stamp = iso(now)
        index = self._ensured()
        removed = 0
        while self._expiry and self._expiry[0][0] < stamp:
            _, key = heapq.heappop(self._expiry)
            segment = self.store.get(key)
            if segment is None or segment["p"] not in owned:
                continue
            if segment["exp"] >= stamp:  # written again since, with a later expiry
                heapq.heappush(self._expiry, (segment["exp"], key))
                continue
            self.store.delete(segment["p"], key)
            prefix = key.rsplit("\x1f", 2)[0]
            for txn in segment["m"]:
                marker_key = f"{prefix}\x1f{txn}"
                held = index.get(marker_key)
                # The same marker may live on in a later segment (set again after a replay).
                if held is not None and held[2] < stamp:
                    del index[marker_key]
                    removed += 1
        self._segments_seen = len(self.store)
        return removed

    def __len__(self) -> int:
        return len(self._ensured())


def _remember(
    index: dict[str, tuple[int, int, str]], key: str, partition: int, at: int, expires: str
) -> None:
    held = index.get(key)
    # A later position of the same partition wins: only a copy requeued from the dead-letter
    # topic sets a second marker (see meterflow.event_records.REQUEUE_HEADER).
    later = held is not None and held[0] == partition and at > held[1]
    if held is None or later or ((held[0], held[1]) == (partition, at) and expires > held[2]):
        index[key] = (partition, at, expires)
