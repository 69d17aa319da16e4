"""The aggregator's state housekeeping gives the event loop back: the dedupe marker index is
built, and markers expire, in slices (issue 15: no stall over 100 ms at a million markers)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import marker_index
from aggregator import markers as markers_module
from aggregator.bigday import BigDay
from aggregator.markers import DedupeMarkers, NewMarker, expiry_day, marker_hash
from aggregator.settings import AggregatorSettings
from aggregator.store import MemoryStore
from meterflow.errors import ConfigurationError

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def filled(batches: int, per_batch: int, day: int) -> MemoryStore:
    """A store holding `batches` segments of `per_batch` markers, each its own subscription."""
    store = MemoryStore(raw=True)
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


async def test_a_build_in_slices_overtaken_by_a_build_at_once_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something needed the index while it was being built in slices (a lookup builds it at
    once): the slices' build stops, the index stays the one built at once."""
    monkeypatch.setattr(markers_module, "BUILD_SLICE", 100)
    markers = DedupeMarkers(filled(10, 50, expiry_day(NOW)))
    building = asyncio.create_task(markers.prepare())
    await asyncio.sleep(0)
    assert markers.seen("o\x1fs7", marker_hash("t9-7"))
    await building
    assert markers.built and len(markers) == 500


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


def test_each_worker_of_several_has_its_own_port_state_and_instance_id() -> None:
    env = {
        "METERFLOW_AGGREGATOR_WORKERS": "3",
        "METERFLOW_AGGREGATOR_PORT": "7000",
        "METERFLOW_AGGREGATOR_DATA_DIR": "/srv/agg",
        "METERFLOW_AGGREGATOR_INSTANCE_ID": "node-a",
    }
    found = [AggregatorSettings.from_env(env).worker(i) for i in range(3)]
    assert [w.port for w in found] == [7000, 7001, 7002]
    assert [str(w.data_dir) for w in found] == ["/srv/agg", "/srv/agg-1", "/srv/agg-2"]
    assert [w.instance_id for w in found] == ["node-a-0", "node-a-1", "node-a-2"]
    assert {(w.workers, w.metrics_port) for w in found} == {(1, 0)}
    unnamed = AggregatorSettings.from_env({**env, "METERFLOW_AGGREGATOR_INSTANCE_ID": ""})
    assert unnamed.worker(1).instance_id == "", "the default then differs by port"
    with pytest.raises(ConfigurationError, match="needs a fixed METERFLOW_AGGREGATOR_PORT"):
        AggregatorSettings.from_env({**env, "METERFLOW_AGGREGATOR_PORT": "0"})


@pytest.mark.parametrize("per_batch", [1, 7, 100, 3_000])
def test_the_compact_index_answers_as_a_set_would(
    monkeypatch: pytest.MonkeyPatch, per_batch: int
) -> None:
    """Packed bytes, sorted arrays with their latest hashes, several expiry days of one
    subscription, a hash replayed into a second segment, expiry by day, a rebuild from the
    segments: every answer and count as a plain set of (subscription, day, hash) gives."""
    monkeypatch.setattr(marker_index, "SMALL", 16)
    store = MemoryStore(raw=True)
    markers = DedupeMarkers(store)
    truth: set[tuple[str, int, int]] = set()
    days = [expiry_day(NOW) + d for d in (1, 2, 3)]
    position = 0
    for b in range(12):
        batch = []
        for i in range(per_batch):
            key, day = f"o\x1fs{i % 3}", days[(b + i) % 3]
            hashed = marker_hash(f"t{b}-{i}")
            batch.append(NewMarker(key, hashed, i % 2, position, day))
            truth.add((key, day, hashed))
            position += 1
        markers.write(batch)
    replayed = next(iter(truth))  # written again to another segment of its day
    markers.write([NewMarker(replayed[0], replayed[2], 0, position, replayed[1])])
    assert len(markers) == len(truth)
    for key in ("o\x1fs0", "o\x1fs1", "o\x1fs2"):
        assert not markers.seen(key, marker_hash("never"))
    for key, _day, hashed in truth:
        assert markers.seen(key, hashed)
    assert not markers.seen("o\x1fs9", next(iter(truth))[2])
    gone, more = markers.expire(datetime.fromtimestamp((days[0] + 1) * 86_400, UTC), {0, 1}, 10**9)
    assert not more and gone == sum(1 for t in truth if t[1] == days[0])
    truth = {t for t in truth if t[1] != days[0]}
    rebuilt = DedupeMarkers(store)
    for index in (markers, rebuilt):
        for key, _day, hashed in truth:
            assert index.seen(key, hashed)
    assert len(rebuilt) == len(truth) == len(markers)


def test_packed_hashes_are_found_only_at_a_hash_s_place() -> None:
    """8 bytes that straddle two packed hashes (the second half of one, the first half of
    the next) are not a hash the subscription holds."""
    a, b = marker_hash("a"), marker_hash("b")
    packed = (7).to_bytes(8, "little") + a.to_bytes(8, "little") + b.to_bytes(8, "little")
    straddling = int.from_bytes(packed[12:20], "little")
    day = int.from_bytes(packed[4:12], "little")
    assert marker_index.in_packed(packed, a) and marker_index.in_packed(packed, b)
    assert not marker_index.in_packed(packed, straddling)
    assert not marker_index.in_packed(packed, day) and not marker_index.in_packed(packed, 7)


def test_a_big_day_answers_as_a_set_of_64_bit_ints_through_its_growth() -> None:
    """Hashes that share their low bits, their high bits or both, 0 and 2**64 - 1, added
    while tables double and then split (past 49,152 hashes a table): each held once,
    found, and nothing else found; an int that is no 64-bit hash is not held and cannot be
    added."""
    low_alike = [n << 40 for n in range(1, 400)]
    high_alike = [(0xAB << 56) | n for n in range(1, 400)]
    others = [marker_hash(f"t{n}") for n in range(120_000)]
    big = BigDay(7, low_alike[:200])
    assert big.day == 7 and len(big) == 200 and big.tables == 1
    assert big.add([0, (1 << 64) - 1, *high_alike, *others]) == 2 + 399 + 120_000
    assert big.add([*low_alike[100:], 0, others[5], others[5]]) == 199  # only the new count
    held = {0, (1 << 64) - 1, *low_alike, *high_alike, *others}
    assert len(big) == len(held) and big.tables >= 2
    for hashed in held:
        assert hashed in big
    for hashed in ((0xAB << 56) | 400, 400 << 40, 1, marker_hash("never"), -1, 1 << 64):
        assert hashed not in big
    with pytest.raises(OverflowError):
        big.add([1 << 64])
    assert 8 * len(held) * 4 // 3 <= sys.getsizeof(big) <= 8 * len(held) * 8 // 3 + 4_096


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, (1 << 64) - 1])),
            max_size=300,
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(0, (1 << 64) - 1), max_size=50),
)
def test_a_big_day_holds_what_a_set_of_the_same_adds_holds(
    adds: list[list[int]], probes: list[int]
) -> None:
    """Any sequence of adds (duplicates within and across them, 0, 2**64 - 1) leaves a
    BigDay holding exactly what a set given the same would, each add counting what was new."""
    big, held = BigDay(3, adds[0]), set(adds[0])
    assert len(big) == len(held)
    for hashes in adds[1:]:
        assert big.add(hashes) == len(set(hashes) - held)
        held.update(hashes)
        assert len(big) == len(held)
    for hashed in (*held, *probes):
        assert (hashed in big) == (hashed in held)
