"""Stream-driven closing: watermarks from end offsets, the schedule by due time, and a
termination that closes once the stream has passed it (issue 11)."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aggregator.catalog_view import CatalogView
from aggregator.closing import PeriodCloser
from aggregator.ledger import ledger_key
from aggregator.markers import DedupeMarkers
from aggregator.processing import EventProcessor, Windows
from aggregator.sample_catalog import SampleCatalog
from aggregator.schedule import SHARD_FROM, CloseSchedule
from aggregator.sharded import ShardedDict
from aggregator.store import MemoryStore
from aggregator.watermark import Watermarks
from meterflow.event_records import partition_for

WINDOWS = Windows(skew=timedelta(seconds=5), hold=timedelta(hours=1), late=timedelta(days=30))


def test_a_watermark_moves_once_progress_reaches_the_end_asked() -> None:
    marks = Watermarks()
    assert marks.to_ask([0, 1]) == [0, 1]
    marks.asked(100.0, {0: 50, 1: 0})
    assert marks.to_ask([0, 1]) == []
    # Partition 1 is empty (idle): caught up at once. Partition 0 is behind.
    assert marks.advance({0: 40}) == [1]
    assert (marks.mark(0), marks.mark(1)) == (None, 100.0)
    assert marks.to_ask([0, 1]) == [1]  # one question outstanding per partition
    marks.asked(101.0, {1: 0})
    assert marks.advance({0: 50}) == [0, 1]
    assert (marks.mark(0), marks.mark(1)) == (100.0, 101.0)
    marks.clear()
    assert marks.mark(0) is None


def test_the_schedule_keeps_each_subscription_at_its_earliest_due_time() -> None:
    schedule = CloseSchedule()
    schedule.at(0, "o", "a", 10.0)
    schedule.at(0, "o", "a", 20.0)  # later: ignored, the visit at 10 plans what follows
    schedule.at(0, "o", "b", 15.0)
    schedule.at(0, "o", "b", 5.0)  # earlier: supersedes
    schedule.at(0, "p", "b", 7.0)  # another organization's "b"
    schedule.at(1, "o", "c", 1.0)
    assert schedule.next_due(0) == 5.0
    assert schedule.pop_due(0, 9.0, 10) == [("o", "b"), ("p", "b")]
    assert schedule.pop_due(0, 9.0, 10) == []
    assert schedule.next_due(0) == 10.0  # (o, b)'s entry at 15 was superseded: skipped
    assert schedule.pop_due(0, 100.0, 10) == [("o", "a")]
    assert schedule.next_due(0) is None and len(schedule) == 1
    for i in range(5):
        schedule.at(2, "o", f"k{i}", float(i))
    assert schedule.pop_due(2, 10.0, 3) == [("o", "k0"), ("o", "k1"), ("o", "k2")]


def test_subscriptions_due_together_share_one_bucket_and_one_float() -> None:
    """Calendar billing ends most periods at the same instant: those subscriptions cost a
    bucket's two references each, their entries one float, and the strings are the
    caller's (the catalog view's), handed back by pop_due."""
    schedule = CloseSchedule()
    names = [f"s{i}" for i in range(10)]
    for name in names:
        schedule.at(0, "o", name, float(100))  # a float object per call
    entries = schedule._due["o"]
    assert len({id(entries.get(name)) for name in names}) == 1
    schedule.at(0, "o", "s3", 50.0)  # earlier: its entry in the bucket at 100 is stale
    assert schedule.pop_due(0, 60.0, 10) == [("o", "s3")]
    first = schedule.pop_due(0, 100.0, 4)  # a bucket taken in part, the rest due still
    rest = schedule.pop_due(0, 100.0, 100)
    assert len(first) == 4 and len(rest) == 5 and len(schedule) == 0
    popped = {external_id: external_id for _, external_id in first + rest}
    assert all(popped[name] is name for name in names if name != "s3")
    assert schedule.next_due(0) is None


def test_an_organizations_entries_are_sharded_once_they_are_many() -> None:
    schedule = CloseSchedule()
    schedule.at(0, "small", "x", 1.0)
    for i in range(SHARD_FROM + 1):
        schedule.at(i % 2, "big", f"k{i}", float(i % 7))
    assert isinstance(schedule._due["small"], dict)
    assert isinstance(schedule._due["big"], ShardedDict)
    schedule.at(0, "big", "k0", 0.5)  # (found in its shard: held at 0.0, not moved)
    assert len(schedule) == SHARD_FROM + 2
    popped = schedule.pop_due(0, 100.0, 10**6) + schedule.pop_due(1, 100.0, 10**6)
    assert len(popped) == SHARD_FROM + 2 == len(set(popped)) and len(schedule) == 0


def closer_with(domain: Any, catalog: CatalogView) -> tuple[PeriodCloser, MemoryStore]:
    ledgers = MemoryStore()
    markers = DedupeMarkers(MemoryStore(raw=True))
    processor = EventProcessor(domain, catalog, ledgers, markers, WINDOWS)
    return PeriodCloser(processor, 4), ledgers


def test_a_termination_closes_once_the_watermark_passes_the_moment_it_was_seen(
    domain: Any, catalog: CatalogView
) -> None:
    closer, ledgers = closer_with(domain, catalog)
    terminated = datetime(2026, 1, 20, 12, tzinfo=UTC)
    seen = terminated + timedelta(seconds=2)
    catalog.clock = seen.timestamp
    catalog.apply(
        SampleCatalog("o1").subscription(
            "s1",
            customer="c1",
            plan_code="p1",
            subscription_at="2026-01-01T00:00:00Z",
            terminated_at=terminated.isoformat(),
        )
    )
    partition = partition_for(b"s1", 4)
    closer.plan("o1", "s1", seen.timestamp())
    counts: Counter[str] = Counter()
    # The watermark is past the termination, not yet past the moment it was seen: wait.
    assert closer.run_due(partition, seen.timestamp() - 1, seen, counts, 10) == []
    closer.run_due(partition, seen.timestamp(), seen, counts, 10)
    assert counts["period_closed"] == 1
    value = ledgers.get(ledger_key("o1", "s1"))
    assert value is not None and value["final"]
    closed = value["outbox"][0]["value"]
    assert closed["terminated"] and closed["period_end"] == terminated.isoformat()
    assert len(closer.schedule) == 0  # nothing more to do for it


def test_a_period_end_waits_for_the_clock_skew_and_visits_only_what_is_due(
    domain: Any, catalog: CatalogView
) -> None:
    closer, _ledgers = closer_with(domain, catalog)
    sample = SampleCatalog("o1")
    for i in range(200):  # monthly from various days: ends spread over the month
        catalog.apply(
            sample.subscription(
                f"m{i}",
                customer="c1",
                plan_code="p1",
                subscription_at=f"2026-01-{1 + i % 28:02d}T00:00:00Z",
            )
        )
    for organization_id, external_id in catalog.subscription_ids():
        closer.plan("".join(organization_id), external_id, 0.0)  # (a copy, as a record's)
    feb_1 = datetime(2026, 2, 1, tzinfo=UTC)
    counts: Counter[str] = Counter()
    for partition in range(4):
        closer.run_due(partition, (feb_1 - timedelta(days=1)).timestamp(), feb_1, counts, 10_000)
    assert counts["period_closed"] == 0
    # Every subscription (calendar billing) ends January at Feb 1: due at Feb 1 + 5 s.
    visited = []
    for partition in range(4):
        at = (feb_1 + timedelta(seconds=4)).timestamp()
        visited += closer.run_due(partition, at, feb_1, counts, 10_000)
    assert visited == [] and counts["period_closed"] == 0
    for partition in range(4):
        at = (feb_1 + timedelta(seconds=5)).timestamp()
        visited += closer.run_due(partition, at, feb_1, counts, 10_000)
    assert counts["period_closed"] == 201 and len(visited) == 201
    assert all(organization_id is sys.intern("o1") for organization_id, _ in visited)
    # All due again at March 1 + 5 s, and not before.
    for partition in range(4):
        at = (feb_1 + timedelta(days=20)).timestamp()
        assert closer.run_due(partition, at, feb_1, counts, 10_000) == []
    assert len(closer.schedule) == 201


def test_a_subscription_terminated_the_instant_it_starts_closes_nothing_and_is_done(
    domain: Any, catalog: CatalogView
) -> None:
    # Created and deleted within one second: `terminated_at` equals `subscription_at`, so its
    # only period has no time in it. Nothing to bill; the closer must not fail on it each tick.
    closer, ledgers = closer_with(domain, catalog)
    instant = datetime(2026, 1, 20, 12, tzinfo=UTC)
    catalog.clock = instant.timestamp
    catalog.apply(
        SampleCatalog("o1").subscription(
            "s1",
            customer="c1",
            plan_code="p1",
            subscription_at=instant.isoformat(),
            terminated_at=instant.isoformat(),
        )
    )
    partition = partition_for(b"s1", 4)
    closer.plan("o1", "s1", instant.timestamp())
    counts: Counter[str] = Counter()
    closer.run_due(partition, instant.timestamp() + 10, instant, counts, 10)
    assert counts["period_closed"] == 0
    value = ledgers.get(ledger_key("o1", "s1"))
    assert value is not None and value["final"] and value["outbox"] == []
    assert len(closer.schedule) == 0


def test_visits_rescheduling_keys_never_rebuild_the_schedule_table() -> None:
    """A popped subscription keeps its entry, replaced in place when the visit schedules it
    again: deleting and inserting it filled the dict with deleted slots until an insert
    rebuilt the table of every key (123 to 216 ms at a million keys, issue 15)."""
    schedule = CloseSchedule()
    for i in range(10_000):
        schedule.at(i % 4, "o", f"k{i}", 0.0)
    entries = schedule._due["o"]
    assert isinstance(entries, ShardedDict)
    size = [sys.getsizeof(shard) for shard in entries._shards]
    for round_ in range(1, 6):
        for partition in range(4):
            for organization_id, external_id in schedule.pop_due(partition, float(round_), 10_000):
                schedule.at(partition, organization_id, external_id, float(round_ + 1))
        assert len(schedule) == 10_000
    assert [sys.getsizeof(shard) for shard in entries._shards] == size
    assert schedule.pop_due(0, 0.5, 10) == [] and schedule.next_due(0) == 6.0
