"""The batch logic: dedupe, replay after a crash, holding, dead letters, closing periods."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest

from aggregator import marker_index
from aggregator import markers as markers_module
from aggregator.catalog_view import CatalogView
from aggregator.closing import PeriodCloser, period_key
from aggregator.ledger import ledger_key
from aggregator.markers import (
    SEGMENT_LIMIT,
    DedupeMarkers,
    expiry_day,
    legacy_marker_hash,
    marker_hash,
)
from aggregator.processing import BatchResult, EventProcessor, SourceMessage, Windows
from aggregator.sample_catalog import SampleCatalog
from aggregator.store import MemoryStore
from meterflow.event_records import encode_pack, partition_for, position

NOW = datetime(2026, 1, 20, tzinfo=UTC)
JAN_10 = datetime(2026, 1, 10, tzinfo=UTC).timestamp()
WINDOWS = Windows(skew=timedelta(hours=1), hold=timedelta(hours=1), late=timedelta(days=30))


def tick(closer: PeriodCloser, at: datetime, owned: set[int]) -> Counter[str]:
    """What the app's closer does once the watermarks of `owned` reach `at`, everything
    scheduled as after an assignment (every subscription, every ledger holding something)."""
    for organization_id, external_id in closer.catalog.subscription_ids():
        closer.plan(organization_id, external_id, 0.0)
    for key, value in closer.ledgers.items():
        if value["held"] or value["late"] or value["outbox"]:
            closer.plan_ledger(value["p"], key, 0.0)
    counts: Counter[str] = Counter()
    for partition in owned:
        closer.run_due(partition, at.timestamp(), at, counts, 10_000)
    while closer.expire_markers(at, owned, counts):
        pass
    return counts


def apply(processor: EventProcessor, batch: list[SourceMessage], now: datetime) -> BatchResult:
    """A batch applied, then its markers written (as the app does once the ledgers are
    durable)."""
    result = processor.apply_batch(batch, now)
    processor.remember(result)
    return result


def message(offset: int, txn: str, *, partition: int = 0, **overrides: Any) -> SourceMessage:
    event = {
        "organization_id": "o1",
        "transaction_id": txn,
        "external_subscription_id": "s1",
        "code": "calls",
        "timestamp": JAN_10,
        "properties": {},
    }
    event.update(overrides)
    return SourceMessage(partition, offset, b"s1", orjson.dumps(event), int(NOW.timestamp() * 1000))


def make(domain: Any, catalog: CatalogView) -> tuple[EventProcessor, MemoryStore, MemoryStore]:
    ledgers, markers = MemoryStore(), MemoryStore(raw=True)
    processor = EventProcessor(domain, catalog, ledgers, DedupeMarkers(markers), WINDOWS)
    return processor, ledgers, markers


def units(ledgers: MemoryStore, charge: str = "ch-o1-p1-calls", sub: str = "s1") -> int:
    value = ledgers.get(ledger_key("o1", sub))
    assert value is not None
    return sum(
        int(p["charges"].get(charge, {}).get("events_count", 0)) for p in value["periods"].values()
    )


def test_duplicates_in_a_batch_and_across_batches_count_once(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _ = make(domain, catalog)
    first = apply(processor, [message(0, "a"), message(1, "b"), message(2, "a")], NOW)
    second = apply(processor, [message(3, "b"), message(4, "c")], NOW)
    assert units(ledgers) == 3
    assert first.counts["duplicate"] == 1 and second.counts["duplicate"] == 1
    assert first.counts["applied"] == 2 and second.counts["applied"] == 1


def test_each_touched_ledger_is_written_once_per_batch(domain: Any, catalog: CatalogView) -> None:
    processor, ledgers, _ = make(domain, catalog)
    apply(processor, [message(i, f"t{i}") for i in range(50)], NOW)
    assert ledgers.writes == 1
    assert units(ledgers) == 50


def test_redelivery_of_applied_offsets_is_skipped(domain: Any, catalog: CatalogView) -> None:
    processor, ledgers, _ = make(domain, catalog)
    batch = [message(i, f"t{i}") for i in range(10)]
    apply(processor, batch, NOW)
    again = apply(processor, [*batch, message(10, "t10")], NOW)
    assert units(ledgers) == 11
    assert again.counts["replayed"] == 10 and again.counts["duplicate"] == 0


def test_a_batch_leaves_its_markers_to_be_written_once_its_ledgers_are_durable(
    domain: Any, catalog: CatalogView
) -> None:
    """A marker must never survive without its event's effect (see aggregator.markers): the
    app writes a batch's markers only after the broker acknowledged its ledgers."""
    processor, ledgers, markers = make(domain, catalog)
    result = processor.apply_batch([message(0, "a"), message(1, "a")], NOW)
    assert ledgers.writes == 1 and markers.writes == 0
    assert result.counts["applied"] == 1 and result.counts["duplicate"] == 1
    processor.remember(result)
    assert markers.writes == 1


def test_ledger_survived_but_marker_lost_still_counts_once(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, markers = make(domain, catalog)
    apply(processor, [message(0, "a")], NOW)
    markers.data.clear()  # the marker record never made it
    result = apply(processor, [message(0, "a"), message(1, "a")], NOW)
    assert units(ledgers) == 1
    assert result.counts["replayed"] == 1 and result.counts["duplicate"] == 1


def test_same_transaction_on_another_subscription_is_not_a_duplicate(
    domain: Any, catalog: CatalogView
) -> None:
    processor, _ledgers, _ = make(domain, catalog)
    result = apply(
        processor, [message(0, "a"), message(1, "a", external_subscription_id="s-unknown")], NOW
    )
    assert result.counts["applied"] == 1 and result.counts["held"] == 1


def pack(offset: int, *events: SourceMessage, partition: int = 0) -> SourceMessage:
    """One record carrying the events of `events` (as ingest writes a batch request)."""
    values = [e.value or b"" for e in events]
    return SourceMessage(partition, offset, None, encode_pack(values), events[0].timestamp_ms)


def test_a_pack_counts_each_event_once_and_dedupes_inside_it(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _ = make(domain, catalog)
    first = pack(0, message(0, "a"), message(0, "b"), message(0, "a"), message(0, "c"))
    result = apply(processor, [first, message(1, "b"), message(2, "d")], NOW)
    assert units(ledgers) == 4  # a, b, c, d
    assert result.counts["applied"] == 4 and result.counts["duplicate"] == 2
    # The same records delivered again (a crash before the commit): nothing changes.
    again = apply(processor, [first, message(1, "b"), message(2, "d")], NOW)
    assert units(ledgers) == 4
    assert again.counts["replayed"] == 6 and again.counts["applied"] == 0


def test_a_bad_event_in_a_pack_is_dead_lettered_alone(domain: Any, catalog: CatalogView) -> None:
    processor, ledgers, _ = make(domain, catalog)
    record = pack(5, message(0, "a"), message(0, "b", timestamp="yesterday"), message(0, "c"))
    result = apply(processor, [record], NOW)
    assert units(ledgers) == 2
    [letter] = result.dead_letters
    assert letter.value["source"] == {"partition": 0, "offset": 5, "index": 1}
    assert orjson.loads(letter.value["payload"])["transaction_id"] == "b"


def test_invalid_events_are_dead_lettered_with_reason_and_payload(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _ = make(domain, catalog)
    poison = [
        SourceMessage(0, 0, b"s1", b"{not json", 0),
        SourceMessage(0, 1, b"s1", b"\xff\xfe", 0),
        SourceMessage(0, 2, b"s1", b"[1]", 0),
        message(3, "x", organization_id=None),
        message(4, "y", timestamp="yesterday"),
        message(5, "z", code="unknown-code"),
        message(6, "w", code="gb", properties={"gb": "lots"}),
    ]
    result = apply(processor, [*poison, message(7, "ok")], NOW)
    assert units(ledgers) == 1
    assert len(result.dead_letters) == 5
    assert result.dead_letters[0].value["payload"] == "{not json"
    assert result.dead_letters[1].value["payload_base64"] == "//4="
    assert result.dead_letters[2].value["source"] == {"partition": 0, "offset": 2, "index": 0}
    assert result.dead_letters[3].value["field"] == "organization_id"
    assert result.dead_letters[4].value["field"] == "timestamp"
    # Known subscription: dead letters go through the ledger's outbox, atomically with it.
    outbox = ledgers.get(ledger_key("o1", "s1"))["outbox"]  # type: ignore[index]
    assert [m["value"]["reason"] for m in outbox] == ["no_charge_for_code", "invalid_property"]


def test_unknown_subscription_is_held_then_applied_once_it_appears(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _markers = make(domain, catalog)
    held = [message(i, f"t{i}", external_subscription_id="s2") for i in range(3)]
    result = apply(processor, [*held, message(3, "t0", external_subscription_id="s2")], NOW)
    assert result.counts["held"] == 3 and result.counts["duplicate"] == 1
    sample = SampleCatalog("o1")
    catalog.apply(
        sample.subscription(
            "s2", customer="c1", plan_code="p1", subscription_at="2026-01-01T00:00:00Z"
        )
    )
    closer = PeriodCloser(processor, 4)
    counts = tick(closer, NOW, {partition_for(b"s2", 4)})
    assert counts["released"] == 3
    assert units(ledgers, sub="s2") == 3
    # A redelivery of the held events changes nothing.
    apply(processor, held, NOW)
    assert units(ledgers, sub="s2") == 3


def test_held_events_past_the_window_are_dead_lettered(domain: Any, catalog: CatalogView) -> None:
    processor, ledgers, _markers = make(domain, catalog)
    apply(processor, [message(0, "t0", external_subscription_id="s9")], NOW)
    closer = PeriodCloser(processor, 4)
    counts = tick(closer, NOW + timedelta(hours=2), set(range(4)))
    assert counts["dead_letter:unknown_subscription"] == 1
    value = ledgers.get(ledger_key("o1", "s9"))
    assert value is not None and value["held"] == []
    assert value["outbox"][0]["value"]["reason"] == "unknown_subscription"


def test_an_unknown_subscription_of_another_workers_partition_is_dead_lettered_at_once(
    domain: Any, catalog: CatalogView
) -> None:
    """A worker keeps the subscriptions of its own partitions only (`CatalogView.kept`): an
    event whose subscription hashes to a partition it does not own came on the wrong one
    (a producer writing to the topic directly); held, it would wait for a subscription this
    worker never learns. One of a partition it owns is held as before."""
    processor, ledgers, _markers = make(domain, catalog)
    own = partition_for(b"s2", 4)
    other = next(f"x{i}" for i in range(100) if partition_for(f"x{i}".encode(), 4) != own)
    catalog.partitions, catalog.kept = 4, frozenset({own})
    result = apply(
        processor,
        [
            message(0, "t0", partition=own, external_subscription_id="s2"),
            message(1, "t1", partition=own, external_subscription_id=other),
            message(2, "t1", partition=own, external_subscription_id=other),
        ],
        NOW,
    )
    assert result.counts["held"] == 1
    assert result.counts["dead_letter:wrong_partition"] == 1
    assert result.counts["duplicate"] == 1  # its marker is set: a resend is no second letter
    value = ledgers.get(ledger_key("o1", other))
    assert value is not None and value["held"] == []
    assert [m["value"]["reason"] for m in value["outbox"]] == ["wrong_partition"]


def test_period_closes_after_grace_with_totals_and_late_events_become_adjustments(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _markers = make(domain, catalog)
    apply(processor, [message(0, "a"), message(1, "b", code="gb", properties={"gb": "1.5"})], NOW)
    closer = PeriodCloser(processor, 4)
    owned = {partition_for(b"s1", 4)}
    feb_1 = datetime(2026, 2, 1, tzinfo=UTC)
    assert tick(closer, feb_1 + timedelta(minutes=59), owned)["period_closed"] == 0
    assert tick(closer, feb_1 + timedelta(hours=1), owned)["period_closed"] == 1
    value = ledgers.get(ledger_key("o1", "s1"))
    assert value is not None
    closed = value["outbox"][0]["value"]
    assert closed["period_key"] == period_key("sub-o1-s1", datetime(2026, 1, 1, tzinfo=UTC))
    assert (closed["period_start"], closed["period_end"]) == (
        "2026-01-01T00:00:00+00:00",
        "2026-02-01T00:00:00+00:00",
    )
    totals = {c["billable_metric_code"]: (c["units"], c["events_count"]) for c in closed["charges"]}
    assert totals == {"calls": ("1", 1), "gb": ("1.5", 1)}
    # A late event for January lands in the late bucket, then in February's close.
    late = apply(processor, [message(2, "late")], feb_1 + timedelta(days=2))
    assert late.counts["late"] == 1
    mar_1 = datetime(2026, 3, 1, tzinfo=UTC)
    tick(closer, mar_1 + timedelta(hours=2), owned)
    value = ledgers.get(ledger_key("o1", "s1"))
    assert value is not None
    february = value["outbox"][1]["value"]
    assert february["period_start"] == "2026-02-01T00:00:00+00:00"
    assert [c["events_count"] for c in february["charges"]] == [0, 0]
    adjustment = february["adjustments"][0]
    assert adjustment["period_start"] == "2026-01-01T00:00:00+00:00"
    assert adjustment["charges"][0]["events_count"] == 1


def test_a_subscription_without_events_closes_its_periods_and_termination_ends_them(
    domain: Any, catalog: CatalogView
) -> None:
    processor, ledgers, _markers = make(domain, catalog)
    sample = SampleCatalog("o1")
    catalog.clock = lambda: datetime(2026, 3, 10, 12, 0, 1, tzinfo=UTC).timestamp()
    catalog.apply(
        sample.subscription(
            "s3",
            customer="c1",
            plan_code="p1",
            subscription_at="2026-01-15T00:00:00Z",
            terminated_at="2026-03-10T12:00:00Z",
        )
    )
    closer = PeriodCloser(processor, 4)
    tick(closer, datetime(2026, 6, 1, tzinfo=UTC), {partition_for(b"s3", 4)})
    value = ledgers.get(ledger_key("o1", "s3"))
    assert value is not None and value["final"]
    spans = [
        (m["value"]["period_start"][:10], m["value"]["period_end"][:19]) for m in value["outbox"]
    ]
    assert spans == [
        ("2026-01-15", "2026-02-01T00:00:00"),
        ("2026-02-01", "2026-03-01T00:00:00"),
        ("2026-03-01", "2026-03-10T12:00:00"),
    ]
    assert value["outbox"][-1]["value"]["terminated"] is True
    # Nothing more on later ticks.
    tick(closer, datetime(2026, 7, 1, tzinfo=UTC), {partition_for(b"s3", 4)})
    assert len(ledgers.get(ledger_key("o1", "s3"))["outbox"]) == 3  # type: ignore[index]


def test_markers_expire_after_period_end_plus_grace_and_late_window(
    domain: Any, catalog: CatalogView
) -> None:
    processor, _ledgers, markers = make(domain, catalog)
    apply(processor, [message(0, "a")], NOW)
    closer = PeriodCloser(processor, 4)
    expiry = datetime(2026, 2, 1, tzinfo=UTC) + WINDOWS.skew + WINDOWS.late
    # Kept until the end of the (UTC) day the expiry falls in.
    tick(closer, expiry.replace(hour=23, minute=59), {0})
    assert len(markers) == 1 and len(processor.markers) == 1
    tick(closer, expiry.replace(hour=0, minute=0) + timedelta(days=1), {0})
    assert len(markers) == 0 and len(processor.markers) == 0


def test_a_batch_writes_one_marker_segment_per_partition_and_recovery_rebuilds_the_index(
    domain: Any, catalog: CatalogView
) -> None:
    processor, _, markers = make(domain, catalog)
    other = [message(50 + i, f"u{i}", external_subscription_id="s-new") for i in range(5)]
    apply(processor, [*(message(i, f"t{i}") for i in range(50)), *other], NOW)
    assert markers.writes == 2  # held events keep their markers for a shorter while
    assert isinstance(next(iter(markers.data.values())), bytes)
    assert len(processor.markers) == 55
    # A fresh worker recovering the same segments knows every marker.
    recovered = DedupeMarkers(markers)
    assert recovered.seen(ledger_key("o1", "s1"), marker_hash("t7"))
    assert recovered.seen(ledger_key("o1", "s-new"), marker_hash("u4"))
    assert not recovered.seen(ledger_key("o1", "s1"), marker_hash("u4"))
    assert len(recovered) == 55


async def test_a_subscription_with_a_huge_batch_writes_bounded_marker_segments(
    domain: Any, catalog: CatalogView, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changelog record must stay under Kafka's 1 MB limit: with 2,000 markers a segment,
    5,000 events of one subscription in one batch make three segments, and every marker is
    still known; a full segment (SEGMENT_LIMIT) stays under 512 KB."""
    monkeypatch.setattr(markers_module, "SEGMENT_LIMIT", 2_000)
    processor, _, markers = make(domain, catalog)
    records = [pack(o, *(message(0, f"t{o}-{i}") for i in range(100))) for o in range(50)]
    again = pack(50, *(message(0, f"t{o}-7") for o in range(40)))  # duplicates in the batch
    result = apply(processor, [*records, again], NOW)
    assert len(markers) == 3 and result.counts["duplicate"] == 40
    recovered = DedupeMarkers(markers)
    await recovered.prepare()
    # The live index (the batch's markers added at once, unsearched) and one rebuilt from
    # the segments agree.
    for index in (processor.markers, recovered):
        assert len(index) == 5_000
        assert all(index.seen(ledger_key("o1", "s1"), marker_hash(f"t{n}-99")) for n in range(50))
        assert not index.seen(ledger_key("o1", "s1"), marker_hash("t50-0"))
    full = [("o1\x1fs1", marker_index.pack(list(range(SEGMENT_LIMIT))))]
    segment = markers_module.Segment(0, 20_000, full, markers_module.VERSION)
    assert len(markers_module._ENCODE.encode(segment)) < 512 * 1024


def test_a_copy_requeued_from_the_dead_letters_counts_once(
    domain: Any, catalog: CatalogView
) -> None:
    """The dead-lettered original set a marker; its requeued copy is let through once (the
    ledger records it), a second requeue of the same original is a duplicate."""
    processor, _ledgers, _ = make(domain, catalog)
    first = apply(processor, [message(0, "a", code="unknown_metric")], NOW)
    assert first.counts["dead_letter:no_charge_for_code"] == 1
    original = (0, position(0, 0))
    copy = message(1, "a", code="unknown_metric")
    requeued = SourceMessage(0, 1, copy.key, copy.value, copy.timestamp_ms, original)
    again = SourceMessage(0, 2, copy.key, copy.value, copy.timestamp_ms, original)
    result = apply(processor, [requeued, again], NOW)
    assert result.counts["dead_letter:no_charge_for_code"] == 1
    assert result.counts["duplicate"] == 1


def _version_1_segment(store: MemoryStore, partition: int, day: int, ids: list[str]) -> None:
    """A marker segment as the aggregator wrote it before version 2: `[partition, day,
    entries]` with BLAKE2b hashes, no version element."""
    hashes = marker_index.pack([legacy_marker_hash(txn) for txn in ids])
    raw = msgspec.msgpack.encode((partition, day, [(ledger_key("o1", "s1"), hashes)]))
    store.put(partition, f"{partition}\x1f{day}\x1f0-{len(ids) - 1}", raw)


def test_markers_of_version_1_still_dedupe_beside_version_2_and_expire(
    domain: Any, catalog: CatalogView
) -> None:
    """A changelog written before the XXH3 hash (version 2) keeps working: its BLAKE2b
    markers are recovered and found (an event counted then, delivered again now, is a
    duplicate), the markers written now are version 2, a worker recovering both kinds
    finds both, a replay of applied offsets is still skipped, and once the old day expires
    the subscription is looked up by one hash again."""
    processor, ledgers, markers = make(domain, catalog)
    old_day = expiry_day(NOW + timedelta(days=2))
    _version_1_segment(markers, 0, old_day, ["old-1", "old-2"])
    key = ledger_key("o1", "s1")
    assert processor.markers.legacy(key)
    first = [message(2, "old-1"), message(3, "old-2"), message(4, "new-1")]
    result = apply(processor, first, NOW)
    assert result.counts["duplicate"] == 2 and result.counts["applied"] == 1
    assert units(ledgers) == 1
    written = [
        markers_module._SEGMENT.decode(raw)
        for name, raw in markers.data.items()
        if not name.endswith("-1")
    ]
    assert [segment.version for segment in written] == [2]
    assert processor.markers.seen(key, marker_hash("new-1"))
    assert not processor.markers.seen(key, legacy_marker_hash("new-1"))
    # A worker recovering both kinds of segment (a restart, a rebalance).
    recovered, _, _ = make(domain, catalog)
    recovered.ledgers, recovered.markers = ledgers, DedupeMarkers(markers)
    again = apply(recovered, [*first, message(5, "old-1"), message(6, "new-1")], NOW)
    assert again.counts["replayed"] == 3 and again.counts["duplicate"] == 2
    more = apply(recovered, [message(7, "old-2"), message(8, "new-2")], NOW)
    assert more.counts["duplicate"] == 1 and more.counts["applied"] == 1
    assert units(ledgers) == 2
    # The version-1 day expires (the version-2 markers, of the period, stay).
    removed, _ = recovered.markers.expire(NOW + timedelta(days=4), {0})
    assert removed == 2 and not recovered.markers.legacy(key)
    assert recovered.markers.seen(key, marker_hash("new-2"))
    assert not DedupeMarkers(markers).legacy(key)
