"""The aggregator's state housekeeping gives the event loop back: the dedupe marker index is
built, and markers expire, in slices (issue 15: no stall over 100 ms at a million markers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import markers as markers_module
from aggregator.markers import DedupeMarkers, NewMarker, expiry_day, marker_hash
from aggregator.settings import AggregatorSettings
from aggregator.store import MemoryStore
from meterflow.errors import ConfigurationError

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def filled(batches: int, per_batch: int, day: int) -> MemoryStore:
    """A store holding `batches` segments of `per_batch` markers, each its own subscription."""
    store = MemoryStore()
    writer = DedupeMarkers(store)
    for b in range(batches):
        writer.write(
            [
                NewMarker(f"o\x1fs{i}", marker_hash(f"t{b}-{i}"), 0, b * per_batch + i, day)
                for i in range(per_batch)
            ]
        )
    return store


async def test_the_marker_index_is_built_in_slices_and_equals_a_build_in_one_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(markers_module, "BUILD_SLICE", 100)
    store = filled(20, 50, expiry_day(NOW))
    markers = DedupeMarkers(store)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while not markers.built:
            ticks += 1
            await asyncio.sleep(0)

    await asyncio.gather(markers.prepare(), other_work())
    assert ticks >= 5  # the loop ran other work between slices
    assert len(markers) == 1_000
    assert markers.seen("o\x1fs7", marker_hash("t19-7"))
    assert not markers.seen("o\x1fs7", marker_hash("t19-8"))
    at_once = DedupeMarkers(store)
    assert at_once.seen("o\x1fs7", marker_hash("t19-7")) and len(at_once) == 1_000


async def test_a_build_overtaken_by_a_rebalance_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table changed while the index was being built: the half-built index (from the
    old content) is thrown away and the build starts again on the new content."""
    monkeypatch.setattr(markers_module, "BUILD_SLICE", 100)
    store = filled(10, 50, expiry_day(NOW))
    markers = DedupeMarkers(store)
    building = asyncio.create_task(markers.prepare())
    await asyncio.sleep(0)
    # As recovery would: a segment arrives underneath, and the rebalance invalidates.
    DedupeMarkers(store).write([NewMarker("o\x1fnew", marker_hash("late"), 1, 7, 1)])
    markers.invalidate()
    await building
    assert markers.seen("o\x1fnew", marker_hash("late")) and len(markers) == 501


def test_markers_expire_in_slices_until_nothing_is_due() -> None:
    day = expiry_day(NOW)
    store = filled(6, 1_000, day)
    markers = DedupeMarkers(store)
    later = NOW + timedelta(days=2)
    rounds, removed, more = 0, 0, True
    while more:
        gone, more = markers.expire(later, {0}, limit=2_000)
        removed += gone
        rounds += 1
    assert removed == 6_000 and rounds == 3
    assert len(markers) == 0 and len(store) == 0


def test_the_store_setting_is_rocksdb_unless_memory_is_asked_for() -> None:
    assert AggregatorSettings.from_env({}).store == "rocksdb"
    assert AggregatorSettings.from_env({"METERFLOW_AGGREGATOR_STORE": "memory"}).store == "memory"
    with pytest.raises(ConfigurationError, match="METERFLOW_AGGREGATOR_STORE"):
        AggregatorSettings.from_env({"METERFLOW_AGGREGATOR_STORE": "redis"})
