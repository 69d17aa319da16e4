"""When each subscription next needs the period closer: per source partition, a min-heap of
the distinct due times and, for each, the subscriptions due then, so that a tick's work is
proportional to what is due, not to the state.

A subscription is held once, at its earliest due time; asking for a later time while an
earlier one is held changes nothing (the earlier visit computes the next due time itself),
asking for an earlier one supersedes it (the entry left in the later due time's bucket is
skipped when popped). Due times are Unix seconds, compared against a partition's watermark
(`aggregator.watermark`), never against the wall clock alone.

It holds every subscription of the worker's partitions, so what it keeps per subscription
is what a worker pays for each in memory (issue 15: it was a third of that). A subscription
is named by its organization and external id as the catalog view holds them, the same
string objects (its ledger key, a string of its own, was 128 bytes), and the seed, the
catalog's changes and each visit hand those objects back. Subscriptions billed on the
calendar share their period's end, so most share a due time: a bucket lists them (16 bytes
a subscription) after the one float that their entries reference too. A heap entry of
(due, key) per subscription with a float of its own was 96 bytes more.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from aggregator.sharded import ShardedDict

# The due time of a subscription popped and not scheduled again. A popped entry stays
# (issue 15): deleting it and inserting it again at the visit fills the dict's entry table
# with deleted slots, and every so often the insert that finds it full rebuilds the table
# of every key held, 123 ms at a million keys in one slice of visits (in-process, load 6;
# one dict then, `ShardedDict` since).
NOT_HELD = math.inf

# An organization's entries move from one dict to a `ShardedDict` once they are this many:
# a million in one dict would rebuild its table in one go as it grows (see
# `aggregator.sharded`), and 256 dicts for each of many small organizations would weigh
# more than their entries.
SHARD_FROM = 4096

# The subscriptions due at one time: [due, organization_id, external_id, organization_id,
# external_id, ...], the due time being the float their entries share.
Bucket = list[Any]
Entries = dict[str, float] | ShardedDict[float]


class CloseSchedule:
    def __init__(self) -> None:
        self._heaps: dict[int, list[float]] = {}  # distinct due times, per partition
        self._buckets: dict[int, dict[float, Bucket]] = {}
        self._due: dict[str, Entries] = {}  # organization id -> external id -> due
        self._held = 0

    def at(self, partition: int, organization_id: str, external_id: str, due: float) -> None:
        """Visit the subscription (of `partition`) once the watermark reaches `due`."""
        entries = self._due.get(organization_id)
        if entries is None:
            entries = self._due[organization_id] = {}
        held = entries.get(external_id)
        if held is None or held == NOT_HELD:
            self._held += 1
        elif held <= due:
            return
        buckets = self._buckets.get(partition)
        if buckets is None:
            buckets = self._buckets[partition] = {}
            self._heaps[partition] = []
        bucket = buckets.get(due)
        if bucket is None:  # (a list built whole: no room reserved for more, 40 bytes)
            buckets[due] = [due, organization_id, external_id]
            heapq.heappush(self._heaps[partition], due)
        else:
            bucket += (organization_id, external_id)
            due = bucket[0]  # (the float the bucket's entries share)
        entries[external_id] = due
        if isinstance(entries, dict) and len(entries) > SHARD_FROM:
            sharded: ShardedDict[float] = ShardedDict()
            for key, value in entries.items():
                sharded[key] = value
            self._due[organization_id] = sharded

    def pop_due(self, partition: int, until: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` subscriptions (organization id, external id) of the partition due at
        or before `until`, earliest due time first; each leaves the schedule (the visit
        schedules it again if need be)."""
        heap = self._heaps.get(partition)
        found: list[tuple[str, str]] = []
        while heap and heap[0] <= until and len(found) < limit:
            due = heap[0]
            buckets = self._buckets[partition]
            bucket = buckets[due]
            while len(bucket) > 1 and len(found) < limit:
                external_id, organization_id = bucket.pop(), bucket.pop()
                entries = self._due[organization_id]
                if entries.get(external_id) == due:  # (not superseded by an earlier time)
                    entries[external_id] = NOT_HELD  # (replaced in place, see NOT_HELD)
                    self._held -= 1
                    found.append((organization_id, external_id))
            if len(bucket) > 1:
                break
            del buckets[due]
            heapq.heappop(heap)
        return found

    def next_due(self, partition: int) -> float | None:
        """The earliest due time held for the partition (superseded entries dropped)."""
        heap = self._heaps.get(partition)
        while heap:
            due = heap[0]
            buckets = self._buckets[partition]
            bucket = buckets[due]
            while len(bucket) > 1 and self._due[bucket[-2]].get(bucket[-1]) != due:
                del bucket[-2:]
            if len(bucket) > 1:
                return due
            del buckets[due]
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        self._heaps.clear()
        self._buckets.clear()
        self._due.clear()
        self._held = 0

    def __len__(self) -> int:
        return self._held
