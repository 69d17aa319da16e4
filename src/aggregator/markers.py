"""Dedupe markers: the transaction ids each subscription has counted, as 64-bit hashes, kept
until the period they fell in is closed and the late window has passed.

Compact by design (issue 15): in memory, per subscription (ledger key) and expiry day, its
64-bit hashes, with no Python object per marker: one int (`day << 64 | hash`) while it holds
one, bytes (the day, then the hashes packed 8 bytes each, searched in C) up to `SMALL`,
beyond that a `BigDay` (buckets of packed hashes by the hash's low bits, each with a byte
a hash searched first); a subscription with hashes of several days keeps a list of its
days. About 10 to 15 bytes a marker beside each subscription's entry (a set of ints cost 70
to 160 bytes a marker by tracemalloc); the structures are in `aggregator.marker_index`.
A batch indexes each marker as it sets it (`mark`: its later events find it, and the bucket
is still in the cache) and gathers them by partition, day and subscription
(`MarkerBatch`) for their segments.
On the changelog and in RocksDB, one record per (source partition, batch, expiry day: the
UTC day after which its markers may go; all the events of one period share it), whatever
the number of subscriptions the batch touched: msgpack
`[partition, day, [[ledger key, hashes], ...]]` with the hashes packed as little-endian
uint64 (8 bytes a marker), at most `SEGMENT_LIMIT` markers a record so that it stays well
under Kafka's 1 MB message limit. Expiry pops whole days from a heap and drops a
subscription's whole day of hashes at once: it costs what expires.

Why a hash and not the transaction id: the id can be long (Lago allows any string) and the
set is held in RAM. The hash is BLAKE2b of the id (8-byte digest), so two ids collide by
chance only: for a subscription holding n markers, a new id is taken for a duplicate with
probability at most n / 2^64 (5.4e-12 with a hundred million markers live in one
subscription), and over all of that subscription's n events the expected number of such
false drops is about n^2 / 2^65 (0.0003 for n = 10^8). A marker set is scoped to its
subscription, so ids of different subscriptions never compete.

Why no position: a marker is written only after the ledger holding its event's effect has
been acknowledged by the broker (`Aggregator.flush_tables` flushes the ledgers, then the
markers), so a marker never outlives its event's effect. (The in-memory index holds a
batch's markers from the moment they are set; should its ledgers never become durable, the
batch fails and the worker ends, index and all.) An event whose position is at or
below its ledger's `applied` was applied already (the ledger decides, `aggregator.processing`);
above it, a marker found means another event carried the same transaction id.

Segment key: `<partition>\x1f<expiry day>\x1f<first position>-<last position>` (days since
1970-01-01; positions of the batch's markers in it, so a replay that splits batches
differently writes new segments rather than overwriting an older one).
"""

from __future__ import annotations

import asyncio
import heapq
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from typing import TypeAlias, cast

import msgspec

from aggregator.marker_index import (
    HASH,
    BigDay,
    Index,
    Part,
    add_hashes,
    drop_day,
    holds,
    in_packed,
    pack,
    tagged,
    unpack,
)
from aggregator.store import PartitionedStore

_SEGMENT = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[str, bytes]]])
_ENCODE = msgspec.msgpack.Encoder()

SEGMENT_LIMIT = 60_000  # hashes per changelog record: about 480 KB, plus the ledger keys
# Markers indexed, or expired, between two yields to the event loop (2 to 35 ms here).
BUILD_SLICE = 2_000
EXPIRE_SLICE = 2_000
_DAY = 86_400


def marker_hash(transaction_id: str) -> int:
    """The 64-bit hash a marker holds for a transaction id."""
    return int.from_bytes(blake2b(transaction_id.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=4096)
def expiry_day(instant: datetime) -> int:
    """The day (since the epoch, UTC) at whose end a marker kept until `instant` may go
    (cached: a batch asks for a few instants, its periods' ends)."""
    return int(instant.timestamp()) // _DAY


class NewMarker(msgspec.Struct, gc=False):
    """A marker given alone to `DedupeMarkers.write` (a batch's come as a `MarkerBatch`)."""

    ledger_key: str
    hash: int
    partition: int
    position: int
    day: int  # expiry_day


Marks: TypeAlias = "dict[str, tuple[list[int], list[int]]]"


class MarkerBatch:
    """The markers a batch sets, grouped as they are stored: (partition, expiry day) ->
    ledger key -> (hashes, their positions), in the order they were set. `indexed`: the
    index generation (`DedupeMarkers.generation`) they were indexed in as they were set
    (`DedupeMarkers.mark`); None when they are to be indexed as they are written."""

    __slots__ = ("groups", "indexed")

    def __init__(self, indexed: int | None = None) -> None:
        self.groups: dict[tuple[int, int], Marks] = {}
        self.indexed = indexed

    def add(self, ledger_key: str, hashed: int, partition: int, position: int, day: int) -> None:
        group = self.groups.get((partition, day))
        if group is None:
            group = self.groups[(partition, day)] = {}
        found = group.get(ledger_key)
        if found is None:
            found = group[ledger_key] = ([], [])
        found[0].append(hashed)
        found[1].append(position)


def _chunks(marks: Marks) -> list[Marks]:
    """One (partition, day)'s marks in segments of at most `SEGMENT_LIMIT`, split in order of
    position, so that each segment's position range is its own (`write_batch`'s keys)."""
    if sum(len(hashes) for hashes, _ in marks.values()) <= SEGMENT_LIMIT:
        return [marks]
    ordered = sorted(
        (at, ledger_key, hashed)
        for ledger_key, (hashes, positions) in marks.items()
        for hashed, at in zip(hashes, positions, strict=True)
    )
    chunks: list[Marks] = []
    for start in range(0, len(ordered), SEGMENT_LIMIT):
        chunk: Marks = {}
        for at, ledger_key, hashed in ordered[start : start + SEGMENT_LIMIT]:
            found = chunk.setdefault(ledger_key, ([], []))
            found[0].append(hashed)
            found[1].append(at)
        chunks.append(chunk)
    return chunks


class DedupeMarkers:
    def __init__(self, store: PartitionedStore) -> None:
        self.store = store
        # ledger key -> its hashes (`Held`); None until built from the store
        self._index: Index | None = None
        self._epoch = 0  # bumped by invalidate(): a build begun before it is stale
        self._count = 0
        # (expiry day, segment key) of every segment written or recovered
        self._expiry: list[tuple[int, str]] = []

    def invalidate(self) -> None:
        """The table changes underneath (recovery, rebalance): rebuild before next use."""
        self._index = None
        self._epoch += 1

    @property
    def built(self) -> bool:
        return self._index is not None

    @property
    def generation(self) -> int:
        """Bumped whenever the index is invalidated (see `MarkerBatch.checked`)."""
        return self._epoch

    async def prepare(self) -> None:
        """Build the index from the store if it is not, giving the event loop back every
        `BUILD_SLICE` markers (a million markers take about a second to index: one go would
        stall the stream and current usage that long). A batch awaits this before it is
        applied; should anything need the index meanwhile, it is built at once instead."""
        while self._index is None:
            epoch = self._epoch
            index: Index = {}
            expiry: list[tuple[int, str]] = []
            count = since_yield = 0
            stale = False
            for key, segment in self.store.items():
                count += _index_segment(index, expiry, key, segment)
                since_yield += len(segment) // 8
                if since_yield >= BUILD_SLICE:
                    since_yield = 0
                    await asyncio.sleep(0)
                    if self._index is not None or epoch != self._epoch:
                        stale = True  # built meanwhile, or the table moved: start again
                        break
            if not stale:
                heapq.heapify(expiry)
                self._index, self._expiry, self._count = index, expiry, count

    def _ensured(self) -> Index:
        if self._index is None:
            index: Index = {}
            expiry: list[tuple[int, str]] = []
            count = 0
            for key, segment in self.store.items():
                count += _index_segment(index, expiry, key, segment)
            heapq.heapify(expiry)
            self._index, self._expiry, self._count = index, expiry, count
        return self._index

    def seen(self, ledger_key: str, hashed: int) -> bool:
        """Whether the subscription counted an event with this transaction id hash."""
        index = self._index
        if index is None:
            index = self._ensured()
        held = index.get(ledger_key)
        if held is None:
            return False
        if type(held) is int:
            return held & HASH == hashed
        if type(held) is bytes:  # inline in_packed: most lookups miss, at once
            needle = hashed.to_bytes(8, "little")
            at = held.find(needle, 8)
            return at > 0 and (not at & 7 or in_packed(held, hashed))
        if type(held) is BigDay:  # inline BigDay.__contains__: most lookups of a busy one
            at = hashed & held.low
            if at < held.split:
                at = hashed & held.high
            found = held.tags[at].find(hashed >> 56)
            return found >= 0 and tagged(held, at, found, hashed)
        return any(holds(part, hashed) for part in cast("list[Part]", held))

    def mark(
        self,
        batch: MarkerBatch,
        ledger_key: str,
        hashed: int,
        partition: int,
        position: int,
        day: int,
        again: bool = False,
    ) -> None:
        """A marker a batch sets (`seen` just said the subscription holds no such hash, or
        `again`: it may, a requeued copy's): indexed at once, so that the batch's later
        events find it, while its bucket is in the cache; its segment is stored by
        `write_batch`, once the ledgers are durable (should they never be, the worker
        ends, and the index with it)."""
        batch.add(ledger_key, hashed, partition, position, day)
        index = self._index if self._index is not None else self._ensured()
        big = index.get(ledger_key)
        if type(big) is not BigDay or big.day != day or again:
            self._count += add_hashes(index, ledger_key, day, [hashed], not again)
            return
        at = hashed & big.low
        if at < big.split:
            at = hashed & big.high
        needle = hashed.to_bytes(8, "little")
        big.buckets[at] += needle
        big.tags[at] += needle[7:]
        big.size += 1
        self._count += 1
        if big.size > big.BUCKET * len(big.buckets):
            big._split()

    def write(self, markers: list[NewMarker]) -> None:
        """Store markers given one by one (`write_batch` takes a batch's, grouped)."""
        batch = MarkerBatch()
        for m in markers:
            batch.add(m.ledger_key, m.hash, m.partition, m.position, m.day)
        self.write_batch(batch)

    def write_batch(self, batch: MarkerBatch) -> None:
        """Store a batch's new markers: one segment per (partition, expiry day) and
        `SEGMENT_LIMIT` markers; each subscription's hashes added to the index at once,
        unless they were as they were set (`mark`) and the index was not rebuilt since."""
        indexed = self._index is not None and batch.indexed == self._epoch
        index = self._ensured()
        for (partition, day), ledgers in batch.groups.items():
            for chunk in _chunks(ledgers):
                low = min(min(positions) for _, positions in chunk.values())
                high = max(max(positions) for _, positions in chunk.values())
                key = f"{partition}\x1f{day}\x1f{low}-{high}"
                entries = [(ledger_key, pack(hashes)) for ledger_key, (hashes, _) in chunk.items()]
                self.store.put(partition, key, _ENCODE.encode((partition, day, entries)))
                heapq.heappush(self._expiry, (day, key))
                if not indexed:
                    for ledger_key, (hashes, _) in chunk.items():
                        self._count += add_hashes(index, ledger_key, day, hashes)

    def expire(self, now: datetime, owned: set[int], limit: int = EXPIRE_SLICE) -> tuple[int, bool]:
        """Delete segments of owned partitions whose expiry day has ended, up to about
        `limit` markers' worth; returns how many markers went and whether more are due
        (the caller gives the event loop back and calls again)."""
        today = expiry_day(now)
        index = self._ensured()
        removed = work = 0
        while self._expiry and self._expiry[0][0] < today:
            if work >= limit:
                return removed, True
            day, key = heapq.heappop(self._expiry)
            partition = int(key.split("\x1f", 1)[0])
            if partition not in owned:
                continue
            segment = self.store.get(key)
            if segment is None:
                continue
            self.store.delete(partition, key)
            entries = _SEGMENT.decode(segment)[2]
            work += 1 + sum(len(packed) for _, packed in entries) // 8
            for ledger_key, _packed in entries:
                gone = drop_day(index, ledger_key, day)
                removed += gone
                self._count -= gone
        return removed, False

    def __len__(self) -> int:
        """Markers held (as of the last build: reading it never builds the index)."""
        return self._count


def _index_segment(index: Index, expiry: list[tuple[int, str]], key: str, segment: bytes) -> int:
    """Add one stored segment to an index being built; returns the markers it added."""
    _partition, day, entries = _SEGMENT.decode(segment)
    expiry.append((day, key))
    return sum(add_hashes(index, ledger_key, day, unpack(packed)) for ledger_key, packed in entries)
