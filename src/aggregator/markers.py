"""Dedupe markers: the transaction ids each subscription has counted, as 64-bit hashes, kept
until the period they fell in is closed and the late window has passed.

Compact by design (issue 15): in memory, per subscription (ledger key) and expiry day, its
64-bit hashes, with no Python object per marker: one int (`day << 64 | hash`) while it holds
one, bytes (the day, then the hashes packed 8 bytes each, searched in C) up to `SMALL`,
beyond that a `BigDay` (buckets of packed hashes by the hash's low bits, each with a byte
a hash searched first); a subscription with hashes of several days keeps a list of its
days. About 10 to 15 bytes a marker beside each subscription's entry (a set of ints cost 70
to 160 bytes a marker by tracemalloc). A batch's new markers come grouped by subscription
and day (`MarkerBatch`), each group added at once, unsearched when the batch looked them
all up in this same index.
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
import sys
from array import array
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from typing import TypeAlias, cast

import msgspec

from aggregator.store import PartitionedStore

Index: TypeAlias = "dict[str, Held]"

_SEGMENT = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[str, bytes]]])
_ENCODE = msgspec.msgpack.Encoder()

SEGMENT_LIMIT = 60_000  # hashes per changelog record: about 480 KB, plus the ledger keys
# Markers indexed, or expired, between two yields to the event loop (2 to 35 ms here).
BUILD_SLICE = 2_000
EXPIRE_SLICE = 2_000
_DAY = 86_400
# Hashes of one (subscription, expiry day) searched as packed bytes (a linear scan in C, 512
# bytes at most); beyond, a BigDay.
SMALL = 64


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
    ledger key -> (hashes, their positions), in the order they were set. `checked`: the
    index generation (`DedupeMarkers.generation`) that every hash was looked up in and not
    found, the same hash never added twice; None when that is not so."""

    __slots__ = ("checked", "groups")

    def __init__(self, checked: int | None = None) -> None:
        self.groups: dict[tuple[int, int], Marks] = {}
        self.checked = checked

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
            return held & _HASH == hashed
        if type(held) is bytes:  # inline _in_packed: most lookups miss, at once
            needle = hashed.to_bytes(8, "little")
            at = held.find(needle, 8)
            return at > 0 and (not at & 7 or _in_packed(held, hashed))
        if type(held) is BigDay:  # inline BigDay.__contains__: most lookups of a busy one
            at = hashed & held.low
            if at < held.split:
                at = hashed & held.high
            found = held.tags[at].find(hashed >> 56)
            return found >= 0 and _tagged(held, at, found, hashed)
        return any(_holds(part, hashed) for part in cast("list[Part]", held))

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
        index = self._ensured()
        for (partition, day), ledgers in batch.groups.items():
            for chunk in _chunks(ledgers):
                low = min(min(positions) for _, positions in chunk.values())
                high = max(max(positions) for _, positions in chunk.values())
                key = f"{partition}\x1f{day}\x1f{low}-{high}"
                entries = [(ledger_key, _pack(hashes)) for ledger_key, (hashes, _) in chunk.items()]
                self.store.put(partition, key, _ENCODE.encode((partition, day, entries)))
                heapq.heappush(self._expiry, (day, key))
                for ledger_key, (hashes, _) in chunk.items():
                    self._count += _add(index, ledger_key, day, hashes, new)

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
                gone = _drop_day(index, ledger_key, day)
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
    return sum(_add(index, ledger_key, day, _unpack(packed)) for ledger_key, packed in entries)


class BigDay:
    """More than `SMALL` hashes of one (subscription, expiry day), in buckets of packed bytes
    chosen by the hash's low bits (linear hashing: when the hashes outnumber `BUCKET` times
    the buckets, one bucket splits in two, so growing never rehashes them all at once).

    Beside each bucket, its tags: the top byte of each of its hashes, in the same order. A
    lookup first searches the tags (memchr over about `BUCKET` bytes, one cache line or two
    of a working set far larger than the caches) and reads the bucket itself only for a
    tag found (about one lookup in five that miss): a batch's lookups, mostly misses, cost
    one memory access each rather than a scan of the whole bucket. About 12 bytes a hash.
    `low` and `high` are the masks of the level's bits and of one bit more (buckets below
    `split` have split already)."""

    __slots__ = ("buckets", "day", "high", "level", "low", "size", "split", "tags")
    BUCKET = 48

    def __init__(self, day: int, hashes: list[int]) -> None:
        self.day = day
        # Buckets grow in place; tags stay bytes (one block: a missing lookup's one read).
        self.buckets = [bytearray()]
        self.tags = [b""]
        self.level = self.split = self.size = self.low = 0
        self.high = 1
        self.add(hashes)

    def __contains__(self, hashed: int) -> bool:
        at = hashed & self.low
        if at < self.split:
            at = hashed & self.high
        found = self.tags[at].find(hashed >> 56)
        return found >= 0 and _tagged(self, at, found, hashed)

    def __len__(self) -> int:
        return self.size

    def add(self, hashes: list[int], new: bool = False) -> int:
        """Add the hashes not held yet (all of them, unsearched, when the caller knows them
        `new`: distinct and not held); returns how many. The splits they will need are made
        first (a bucket never grows far past `BUCKET`, and one loop with no split in it
        places them all)."""
        while self.size + len(hashes) > self.BUCKET * len(self.buckets):
            self._split()
        buckets, tags, low, high, split = self.buckets, self.tags, self.low, self.high, self.split
        added = 0
        for hashed in hashes:
            at = hashed & low
            if at < split:
                at = hashed & high
            if not new:
                found = tags[at].find(hashed >> 56)
                if found >= 0 and _tagged(self, at, found, hashed):
                    continue
            needle = hashed.to_bytes(8, "little")
            buckets[at] += needle
            tags[at] += needle[7:]
            added += 1
        self.size += added
        return added

    def _split(self) -> None:
        """Split the next bucket in turn by the hash bit above the level's."""
        bit = 1 << self.level
        low: list[int] = []
        high: list[int] = []
        for hashed in _unpack(self.buckets[self.split]):
            (high if hashed & bit else low).append(hashed)
        stay, move = _pack(low), _pack(high)
        self.buckets[self.split], self.tags[self.split] = bytearray(stay), stay[7::8]
        self.buckets.append(bytearray(move))
        self.tags.append(move[7::8])
        self.split += 1
        if self.split == bit:
            self.level += 1
            self.split = 0
            self.low, self.high = (1 << self.level) - 1, (2 << self.level) - 1


def _tagged(big: BigDay, at: int, found: int, hashed: int) -> bool:
    """Whether bucket `at` holds `hashed`, its tag found at `found` in the bucket's tags."""
    tags, bucket, tag = big.tags[at], big.buckets[at], hashed >> 56
    needle = hashed.to_bytes(8, "little")
    while found >= 0:
        if bucket[found * 8 : found * 8 + 8] == needle:
            return True
        found = tags.find(tag, found + 1)
    return False


# A subscription's hashes: one day's (an int, `day << 64 | hash`, while it holds one; packed
# bytes, the day then the hashes, 8 bytes each; or a BigDay), or several days' in a list.
Part: TypeAlias = "int | bytes | BigDay"
Held: TypeAlias = "Part | list[Part]"
_HASH = (1 << 64) - 1


def _in_packed(packed: bytes, hashed: int) -> bool:
    """Whether packed day hashes (after their 8-byte day) hold `hashed` at a hash's place."""
    needle = hashed.to_bytes(8, "little")
    at = packed.find(needle, 8)
    while at > 0 and at & 7:  # found across two hashes: look on
        at = packed.find(needle, at + 1)
    return at > 0


def _holds(part: Part, hashed: int) -> bool:
    if type(part) is int:
        return part & _HASH == hashed
    if type(part) is bytes:
        return _in_packed(part, hashed)
    return hashed in cast(BigDay, part)


def _day_of(part: Part) -> int:
    if type(part) is int:
        return part >> 64
    if type(part) is bytes:
        return int.from_bytes(part[:8], "little")
    return cast(BigDay, part).day


def _size(part: Part) -> int:
    if type(part) is int:
        return 1
    return len(part) // 8 - 1 if type(part) is bytes else len(cast(BigDay, part))


def _new_part(day: int, hashes: list[int]) -> tuple[Part, int]:
    """A day's part holding `hashes`, and how many distinct hashes it holds."""
    if len(hashes) == 1:
        return day << 64 | hashes[0], 1
    fresh = list(dict.fromkeys(hashes))
    if len(fresh) > SMALL:
        return BigDay(day, fresh), len(fresh)
    if len(fresh) == 1:
        return day << 64 | fresh[0], 1
    return day.to_bytes(8, "little") + _pack(fresh), len(fresh)


def _grown(part: Part, day: int, hashes: list[int], new: bool) -> tuple[Part, int]:
    """The day's part with `hashes` added, and how many of them were new (all, when the
    caller knows them `new`, see `BigDay.add`)."""
    if type(part) is int:
        fresh = [h for h in hashes if h != part & _HASH]
        if not fresh:
            return part, 0
        grown, size = _new_part(day, [part & _HASH, *fresh])
        return grown, size - 1
    if type(part) is bytes:
        if new:
            fresh = hashes
        else:
            held = set(_unpack(part[8:]))  # (one set, not a search per hash)
            fresh = [h for h in dict.fromkeys(hashes) if h not in held]
        if len(part) // 8 - 1 + len(fresh) > SMALL:
            return BigDay(day, [*_unpack(part[8:]), *fresh]), len(fresh)
        return part + _pack(fresh), len(fresh)
    big = cast(BigDay, part)
    return big, big.add(hashes, new)


def _add(index: Index, ledger_key: str, day: int, hashes: list[int], new: bool = False) -> int:
    """Add a subscription's hashes of one expiry day to the index; returns how many were new
    (a replay may have written a hash to a second segment of the same day; `new`: the
    caller knows they are all distinct and not held)."""
    held = index.get(ledger_key)
    if held is None:
        index[ledger_key], added = _new_part(day, hashes)
        return added
    if not isinstance(held, list):
        if _day_of(held) == day:
            index[ledger_key], added = _grown(held, day, hashes, new)
            return added
        part, added = _new_part(day, hashes)
        index[ledger_key] = [held, part]
        return added
    for i, part in enumerate(held):
        if _day_of(part) == day:
            held[i], added = _grown(part, day, hashes, new)
            return added
    part, added = _new_part(day, hashes)
    held.append(part)
    return added


def _drop_day(index: Index, ledger_key: str, day: int) -> int:
    """Remove a subscription's hashes of an expired day (those of every segment of that
    day: they all expire together); returns how many went. A hash is written to a second
    segment only when the index lost it (see `processing`), so no other day keeps it."""
    held = index.get(ledger_key)
    if held is None:
        return 0
    if not isinstance(held, list):
        if _day_of(held) != day:
            return 0
        del index[ledger_key]
        return _size(held)
    kept = [part for part in held if _day_of(part) != day]
    gone = sum(_size(part) for part in held) - sum(_size(part) for part in kept)
    if not kept:
        del index[ledger_key]
    elif len(kept) < len(held):
        index[ledger_key] = kept[0] if len(kept) == 1 else kept
    return gone


def _pack(hashes: list[int]) -> bytes:
    packed = array("Q", hashes)
    if packed.itemsize != 8:  # pragma: no cover - every platform Python runs on today
        raise RuntimeError("array('Q') is not 64-bit here")
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tobytes()


def _unpack(data: bytes | bytearray) -> list[int]:
    packed = array("Q", data)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()
