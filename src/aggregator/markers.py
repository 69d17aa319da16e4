"""Dedupe markers: the transaction ids each subscription has counted, as 64-bit hashes, kept
until the period they fell in is closed and the late window has passed.

Compact by design (issue 15): in memory, per subscription (ledger key) and expiry day, its
64-bit hashes, with no Python object per marker: one int (`day << 64 | hash`) while it holds
one, bytes (the day, then the hashes packed 8 bytes each, searched in C) up to `SMALL`,
beyond that a `BigDay` (`aggregator/bigday.c`: open-addressing tables of 64-bit slots,
at most 3/4 full, under a directory); a subscription with hashes of several days keeps a
list of its days. About 8 to 21 bytes a marker beside each subscription's entry (a set of
ints cost 70 to 160 bytes a marker by tracemalloc). A batch's new markers come grouped by
subscription and day (`MarkerBatch`), each group added at once, packed bytes unsearched
when the batch looked them all up in this same index.
The index itself is `aggregator.marker_index`.
On the changelog and in RocksDB, one record per (source partition, batch, expiry day: the
UTC day after which its markers may go; all the events of one period share it), whatever
the number of subscriptions the batch touched: msgpack
`[partition, day, [[ledger key, hashes], ...], version]` with the hashes packed as
little-endian uint64 (8 bytes a marker), at most `SEGMENT_LIMIT` markers a record so that it
stays well under Kafka's 1 MB message limit. Expiry pops whole days from a heap and drops a
subscription's whole day of hashes at once: it costs what expires.

Why a hash and not the transaction id: the id can be long (Lago allows any string) and the
set is held in RAM. Two versions of the hash (the segment's last element; a segment without
one is version 1):
- version 2 (written since issue 15's fourth round): XXH3-64 of the id's UTF-8 bytes (the
  `xxhash` package), about a tenth of BLAKE2b's cost a call here (0.13 against 1.3 us);
- version 1: BLAKE2b of the id (8-byte digest). Segments written so are still read: while a
  subscription holds version-1 markers (`DedupeMarkers.legacy`), an event its version-2
  hash does not find is looked up by its BLAKE2b hash too, until those days expire.
Collisions: XXH3 is not a cryptographic hash, but it passes SMHasher's distribution tests,
so for ids that are not built to collide two ids share a hash by chance only: for a
subscription holding n markers, a new id is taken for a duplicate with probability at most
n / 2^64 (5.4e-12 with a hundred million markers live in one subscription; twice that while
it also holds version-1 markers, looked up under both hashes), and over all of that
subscription's n events the expected number of such false drops is about n^2 / 2^65
(0.0003 for n = 10^8). A marker set is scoped to its subscription and lives only until its
period's late window ends, so ids of different subscriptions or of long-closed periods
never compete. Ids built to collide: only a holder of the organization's API key writes
events (the transaction id is the producer's), and a colliding pair drops that producer's
own second event, which it could as well not have sent; no one else can make another
organization's events vanish.

Why no position: a marker is written only after the ledger holding its event's effect has
been acknowledged by the broker (`Aggregator.flush_tables` flushes the ledgers, then the
markers), so a marker never outlives its event's effect. An event whose position is at or
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
from typing import TypeAlias

import msgspec
from xxhash import xxh3_64_intdigest

from aggregator.marker_index import (
    Held,
    Index,
    add_hashes,
    drop_day,
    held_holds,
    pack,
    unpack,
)
from aggregator.marker_segments import NewMarker, Segment
from aggregator.sharded import ShardedDict
from aggregator.store import PartitionedStore

__all__ = ["DedupeMarkers", "MarkerBatch", "NewMarker", "Segment", "expiry_day", "marker_hash"]

VERSION = 2  # of the hash a segment's markers hold (see the module docstring)


_SEGMENT = msgspec.msgpack.Decoder(Segment)
_ENCODE = msgspec.msgpack.Encoder()

SEGMENT_LIMIT = 60_000  # hashes per changelog record: about 480 KB, plus the ledger keys
# Markers indexed, or expired, between two yields to the event loop (2 to 35 ms here).
BUILD_SLICE = 2_000
EXPIRE_SLICE = 2_000
_DAY = 86_400


def marker_hash(transaction_id: str) -> int:
    """The 64-bit hash a marker holds for a transaction id (version 2: XXH3-64)."""
    return xxh3_64_intdigest(transaction_id.encode())


def legacy_marker_hash(transaction_id: str) -> int:
    """The hash of version 1 (BLAKE2b, 8-byte digest), which segments written before
    version 2 hold."""
    return int.from_bytes(blake2b(transaction_id.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=4096)
def expiry_day(instant: datetime) -> int:
    """The day (since the epoch, UTC) at whose end a marker kept until `instant` may go
    (cached: a batch asks for a few instants, its periods' ends)."""
    return int(instant.timestamp()) // _DAY


Marks: TypeAlias = "dict[str, tuple[list[int], list[int]]]"


class MarkerBatch:
    """The markers a batch sets, grouped as they are stored: (partition, expiry day) ->
    ledger key -> (hashes, their positions), in the order they were set. `checked`: the
    index generation (`DedupeMarkers.generation`) that every hash was looked up in and not
    found, the same hash never added twice; None when that is not so. `indexed`: see
    `DedupeMarkers.index_batch`."""

    __slots__ = ("_day", "_group", "_partition", "checked", "groups", "indexed")

    def __init__(self, checked: int | None = None) -> None:
        self.groups: dict[tuple[int, int], Marks] = {}
        self.checked = checked
        # The index generation `DedupeMarkers.index_batch` added them to, if it did.
        self.indexed: int | None = None
        # The group `add` used last and its (partition, day): a batch's events mostly share
        # both, and comparing two ints costs less than building and hashing a key tuple.
        self._partition = -1
        self._day = -1
        self._group: Marks = {}

    def add(self, ledger_key: str, hashed: int, partition: int, position: int, day: int) -> None:
        if partition == self._partition and day == self._day:
            group = self._group
        else:
            found_group = self.groups.get((partition, day))
            if found_group is None:
                found_group = self.groups[(partition, day)] = {}
            group = self._group = found_group
            self._partition, self._day = partition, day
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


class _Build:
    """An index being built from stored segments."""

    __slots__ = ("count", "expiry", "index", "legacy")

    def __init__(self) -> None:
        self.index: Index = ShardedDict()
        self.expiry: list[tuple[int, str]] = []  # (expiry day, segment key)
        self.legacy: dict[str, set[int]] = {}  # ledger key -> days of its version-1 markers
        self.count = 0

    def segment(self, key: str, raw: bytes) -> None:
        """Add one stored segment."""
        segment = _SEGMENT.decode(raw)
        day, index = segment.day, self.index
        self.expiry.append((day, key))
        for ledger_key, packed in segment.entries:
            self.count += add_hashes(index, ledger_key, day, unpack(packed))
            if segment.version == 1:
                self.legacy.setdefault(ledger_key, set()).add(day)


class DedupeMarkers:
    def __init__(self, store: PartitionedStore) -> None:
        self.store = store
        # ledger key -> its hashes (`Held`); None until built from the store
        self._index: Index | None = None
        self._epoch = 0  # bumped by invalidate(): a build begun before it is stale
        self._count = 0
        # (expiry day, segment key) of every segment written or recovered
        self._expiry: list[tuple[int, str]] = []
        # ledger key -> the expiry days for which it holds version-1 (BLAKE2b) markers
        self._legacy: dict[str, set[int]] = {}

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

    def legacy(self, ledger_key: str) -> bool:
        """Whether the subscription holds version-1 markers: its events are looked up by
        `legacy_marker_hash` too (builds the index if need be)."""
        self._ensured()
        return ledger_key in self._legacy

    async def prepare(self) -> None:
        """Build the index from the store if it is not, giving the event loop back every
        `BUILD_SLICE` markers (a million markers take about a second to index: one go would
        stall the stream and current usage that long). A batch awaits this before it is
        applied; should anything need the index meanwhile, it is built at once instead."""
        # (`self.built`, not `self._index is None`: mypy, and so mypyc, would take the
        # attribute for None after the await below, which another task may have changed)
        while not self.built:
            epoch = self._epoch
            build = _Build()
            since_yield = 0
            stale = False
            for key, segment in self.store.items():
                build.segment(key, segment)
                since_yield += len(segment) // 8
                if since_yield >= BUILD_SLICE:
                    since_yield = 0
                    await asyncio.sleep(0)
                    if self.built or epoch != self._epoch:
                        stale = True  # built meanwhile, or the table moved: start again
                        break
            if not stale:
                self._built(build)

    def _built(self, build: _Build) -> Index:
        heapq.heapify(build.expiry)
        self._index, self._expiry, self._count = build.index, build.expiry, build.count
        self._legacy = build.legacy
        return build.index

    def _ensured(self) -> Index:
        index = self._index
        if index is None:
            build = _Build()
            for key, segment in self.store.items():
                build.segment(key, segment)
            # (returned, not read back: mypy, and so mypyc, would take the attribute for
            # the None it was tested to be above)
            index = self._built(build)
        return index

    def held(self, ledger_key: str) -> Held | None:
        """The subscription's hashes as the index holds them now (`held_holds` answers for
        them): a batch reads them once per subscription, as nothing changes the index
        while a batch is applied (`index_batch` and `write_batch` run between slices)."""
        index = self._index
        if index is None:
            index = self._ensured()
        return index.get(ledger_key)

    def seen(self, ledger_key: str, hashed: int) -> bool:
        """Whether the subscription counted an event with this transaction id hash."""
        return held_holds(self.held(ledger_key), hashed)

    def write(self, markers: list[NewMarker]) -> None:
        """Store markers given one by one (`write_batch` takes a batch's, grouped)."""
        batch = MarkerBatch()
        for m in markers:
            batch.add(m.ledger_key, m.hash, m.partition, m.position, m.day)
        self.write_batch(batch)

    def write_batch(self, batch: MarkerBatch) -> None:
        """Store a batch's new markers: one segment per (partition, expiry day) and
        `SEGMENT_LIMIT` markers, each subscription's hashes added to the index at once
        (unsearched when the batch checked them all in this very index)."""
        new = self._index is not None and batch.checked == self._epoch
        indexed = self._index is not None and batch.indexed == self._epoch
        index = self._ensured()
        for (partition, day), ledgers in batch.groups.items():
            for chunk in _chunks(ledgers):
                low = min(min(positions) for _, positions in chunk.values())
                high = max(max(positions) for _, positions in chunk.values())
                key = f"{partition}\x1f{day}\x1f{low}-{high}"
                entries = [(ledger_key, pack(hashes)) for ledger_key, (hashes, _) in chunk.items()]
                self.store.put(
                    partition, key, _ENCODE.encode(Segment(partition, day, entries, VERSION))
                )
                heapq.heappush(self._expiry, (day, key))
                if not indexed:
                    for ledger_key, (hashes, _) in chunk.items():
                        self._count += add_hashes(index, ledger_key, day, hashes, new)

    def index_batch(self, batch: MarkerBatch) -> None:
        """Add a batch's markers to the index before `write_batch` writes them: the app
        applies a batch's next slice while the last one's ledgers are being acknowledged
        (the segments must wait for that; the next slice must find these hashes). Only the
        index: it goes with the process, and a rebuilt one (`invalidate`) lacks them until
        `write_batch`, which then adds them."""
        new = self._index is not None and batch.checked == self._epoch
        index = self._ensured()
        for (_partition, day), ledgers in batch.groups.items():
            for ledger_key, (hashes, _) in ledgers.items():
                self._count += add_hashes(index, ledger_key, day, hashes, new)
        batch.indexed = self._epoch

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
            stored = _SEGMENT.decode(segment)
            work += 1 + sum(len(packed) for _, packed in stored.entries) // 8
            for ledger_key, _packed in stored.entries:
                gone = drop_day(index, ledger_key, day)
                removed += gone
                self._count -= gone
                if stored.version == 1:
                    self._forget_legacy(ledger_key, day)
        return removed, False

    def _forget_legacy(self, ledger_key: str, day: int) -> None:
        days = self._legacy.get(ledger_key)
        if days is not None:
            days.discard(day)
            if not days:
                del self._legacy[ledger_key]

    def __len__(self) -> int:
        """Markers held (as of the last build: reading it never builds the index)."""
        return self._count
