"""Dedupe markers: the transaction ids each subscription has counted, as 64-bit hashes, kept
until the period they fell in is closed and the late window has passed.

Compact by design (issue 15): in memory, per subscription (ledger key), one set of 64-bit
integers per expiry day (the UTC day after which its markers may go; all the events of one
period share it), about 70 bytes a marker; on the changelog, one record per (subscription,
source partition, batch, expiry day) holding that batch's hashes packed as little-endian
uint64 in base64 (11 bytes a marker), at most `SEGMENT_LIMIT` a record so that it stays well
under Kafka's 1 MB message limit. Expiry pops whole days from a heap: it costs what expires.

Why a hash and not the transaction id: the id can be long (Lago allows any string) and the
set is held in RAM. The hash is BLAKE2b of the id (8-byte digest), so two ids collide by
chance only: for a subscription holding n markers, a new id is taken for a duplicate with
probability at most n / 2^64 (5.4e-12 with a hundred million markers live in one
subscription), and over all of that subscription's n events the expected number of such
false drops is about n^2 / 2^65 (0.0003 for n = 10^8). A marker set is scoped to its
subscription, so ids of different subscriptions never compete.

Why no position: a marker is written only after the ledger holding its event's effect has
been acknowledged by the broker (`Aggregator.flush_tables` flushes the ledgers, then the
markers), so a marker never outlives its event's effect. An event whose position is at or
below its ledger's `applied` was applied already (the ledger decides, `aggregator.processing`);
above it, a marker found means another event carried the same transaction id.

Segment value: `{"p": partition, "d": <expiry day, days since 1970-01-01>, "h": "<base64>"}`.
"""

from __future__ import annotations

import base64
import heapq
import sys
from array import array
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b

from aggregator.store import PartitionedStore

SEGMENT_LIMIT = 40_000  # hashes per changelog record: about 430 KB once encoded
_DAY = 86_400


def marker_hash(transaction_id: str) -> int:
    """The 64-bit hash a marker holds for a transaction id."""
    return int.from_bytes(blake2b(transaction_id.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=4096)
def expiry_day(instant: datetime) -> int:
    """The day (since the epoch, UTC) at whose end a marker kept until `instant` may go
    (cached: a batch asks for a few instants, its periods' ends)."""
    return int(instant.timestamp()) // _DAY


@dataclass(slots=True)
class NewMarker:
    ledger_key: str
    hash: int
    partition: int
    position: int
    day: int  # expiry_day


class DedupeMarkers:
    def __init__(self, store: PartitionedStore) -> None:
        self.store = store
        # ledger key -> expiry day -> hashes
        self._index: dict[str, dict[int, set[int]]] | None = None
        self._segments_seen = -1
        self._count = 0
        # (expiry day, segment key) of every segment written or recovered
        self._expiry: list[tuple[int, str]] = []

    def invalidate(self) -> None:
        """The table changed underneath (recovery, rebalance): rebuild before next use."""
        self._index = None

    def _ensured(self) -> dict[str, dict[int, set[int]]]:
        if self._index is None or len(self.store) != self._segments_seen:
            index: dict[str, dict[int, set[int]]] = {}
            expiry: list[tuple[int, str]] = []
            count = 0
            for key, segment in self.store.items():
                day = int(segment["d"])
                expiry.append((day, key))
                hashes = _unpack(segment["h"])
                held = index.setdefault(_ledger_key(key), {}).setdefault(day, set())
                before = len(held)
                held.update(hashes)
                count += len(held) - before
            heapq.heapify(expiry)
            self._index, self._expiry, self._count = index, expiry, count
            self._segments_seen = len(self.store)
        return self._index

    def seen(self, ledger_key: str, hashed: int) -> bool:
        """Whether the subscription counted an event with this transaction id hash."""
        index = self._index
        if index is None or len(self.store) != self._segments_seen:
            index = self._ensured()
        days = index.get(ledger_key)
        if days:
            for held in days.values():
                if hashed in held:
                    return True
        return False

    def write(self, markers: list[NewMarker]) -> None:
        """Store a batch's new markers: one segment per (subscription, partition, expiry day)
        and `SEGMENT_LIMIT` markers."""
        index = self._ensured()
        segments: dict[tuple[str, int, int], list[NewMarker]] = {}
        for marker in markers:
            ident = (marker.ledger_key, marker.partition, marker.day)
            segments.setdefault(ident, []).append(marker)
        for (ledger_key, partition, day), found in segments.items():
            found.sort(key=lambda m: m.position)  # so each segment's range is its own
            held = index.setdefault(ledger_key, {}).setdefault(day, set())
            for start in range(0, len(found), SEGMENT_LIMIT):
                items = found[start : start + SEGMENT_LIMIT]
                # First and last position: a replay that splits batches differently writes
                # new segments rather than overwriting an older one with fewer markers.
                first, last = items[0].position, items[-1].position
                key = f"{ledger_key}\x1f{partition}\x1f{day}\x1f{first}-{last}"
                hashes = [m.hash for m in items]
                self.store.put(partition, key, {"p": partition, "d": day, "h": _pack(hashes)})
                heapq.heappush(self._expiry, (day, key))
                before = len(held)
                held.update(hashes)
                self._count += len(held) - before
        self._segments_seen = len(self.store)

    def expire(self, now: datetime, owned: set[int]) -> int:
        """Delete the segments of owned partitions whose expiry day has ended; returns how
        many markers went."""
        today = expiry_day(now)
        index = self._ensured()
        removed = 0
        while self._expiry and self._expiry[0][0] < today:
            day, key = heapq.heappop(self._expiry)
            segment = self.store.get(key)
            if segment is None or segment["p"] not in owned:
                continue
            self.store.delete(segment["p"], key)
            days = index.get(_ledger_key(key))
            held = None if days is None else days.pop(day, None)
            if held is not None:
                removed += len(held)
                self._count -= len(held)
            if days is not None and not days:
                del index[_ledger_key(key)]
        self._segments_seen = len(self.store)
        return removed

    def __len__(self) -> int:
        self._ensured()
        return self._count


def _ledger_key(segment_key: str) -> str:
    return segment_key.rsplit("\x1f", 3)[0]


def _pack(hashes: list[int]) -> str:
    packed = array("Q", hashes)
    if packed.itemsize != 8:  # pragma: no cover - every platform Python runs on today
        raise RuntimeError("array('Q') is not 64-bit here")
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def _unpack(text: str) -> list[int]:
    packed = array("Q", base64.b64decode(text))
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()
