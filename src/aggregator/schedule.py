"""When each subscription next needs the period closer: a min-heap of (due, ledger key) per
source partition, so that a tick's work is proportional to what is due, not to the state.

A key is held once, at its earliest due time; asking for a later time while an earlier one
is held changes nothing (the earlier visit computes the next due time itself), asking for
an earlier one supersedes it (the later heap entry is left behind and skipped when popped).
Due times are Unix seconds, compared against a partition's watermark
(`aggregator.watermark`), never against the wall clock alone.
"""

from __future__ import annotations

import heapq
import math

from aggregator.sharded import ShardedDict

# The due time of a key popped and not scheduled again. A popped key keeps its dict entry
# (issue 15): deleting it and inserting it again at the visit fills the dict's entry table
# with deleted slots, and every so often the insert that finds it full rebuilds the table
# of every key held, 123 ms at a million keys in one slice of visits (in-process, load 6;
# one dict then, `ShardedDict` since).
NOT_HELD = math.inf


class CloseSchedule:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._due: ShardedDict[float] = ShardedDict()
        self._held = 0

    def at(self, partition: int, key: str, due: float) -> None:
        """Visit `key` (a ledger key of `partition`) once the watermark reaches `due`."""
        held = self._due.get(key)
        held = NOT_HELD if held is None else held
        if held <= due:
            return
        if held == NOT_HELD:
            self._held += 1
        self._due[key] = due
        heapq.heappush(self._heaps.setdefault(partition, []), (due, key))

    def pop_due(self, partition: int, until: float, limit: int) -> list[str]:
        """Up to `limit` keys of the partition due at or before `until`, earliest first;
        each leaves the schedule (the visit schedules it again if need be)."""
        heap = self._heaps.get(partition)
        found: list[str] = []
        while heap and heap[0][0] <= until and len(found) < limit:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                self._due[key] = NOT_HELD  # (replaced in place, see NOT_HELD)
                self._held -= 1
                found.append(key)
        return found

    def next_due(self, partition: int) -> float | None:
        """The earliest due time held for the partition (stale entries skipped)."""
        heap = self._heaps.get(partition)
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def clear(self) -> None:
        self._heaps.clear()
        self._due.clear()
        self._held = 0

    def __len__(self) -> int:
        return self._held
