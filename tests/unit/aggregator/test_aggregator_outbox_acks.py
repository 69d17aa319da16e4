"""The closer's outbox messages known sent by one record per partition and slice
(`aggregator.outbox_acks`): epochs above everything used, what a record covers, and a
visit that tags what it writes and drops what the broker has."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from aggregator.catalog_view import CatalogView
from aggregator.closing import PeriodCloser
from aggregator.closing_driver import ClosingDriver
from aggregator.ledger import ledger_key, new_ledger_value
from aggregator.markers import DedupeMarkers
from aggregator.outbox_acks import OutboxAcks
from aggregator.processing import EventProcessor, Windows
from aggregator.store import MemoryStore
from meterflow.event_records import partition_for

WINDOWS = Windows(skew=timedelta(seconds=5), hold=timedelta(hours=1), late=timedelta(days=30))


def test_a_record_covers_its_epoch_and_below_on_its_partition_only() -> None:
    table = MemoryStore()
    acks = OutboxAcks(table)
    assert acks.next_epoch(0) == 1 and acks.next_epoch(0) == 2
    # A seed found a message tagged 7 (sent or not): new epochs go above it.
    acks.seen(0, [{"id": 1, "e": 7}, {"id": 2}])
    assert acks.next_epoch(0) == 8
    acks.acknowledged(0, 8)
    assert table.get("o0") == {"sent": 8} and table.writes == 1
    outbox = [{"id": 1, "e": 8}, {"id": 2}, {"id": 3, "e": 9}, {"id": 4, "e": 3}]
    assert [m["id"] for m in acks.unsent(0, outbox)] == [2, 3]  # untagged: always unsent
    assert [m["id"] for m in acks.unsent(1, outbox)] == [1, 2, 3, 4]
    acks.acknowledged(0, 5)  # below the record: nothing written
    assert table.writes == 1
    # A restarted worker (or a new owner) reads the record back.
    again = OutboxAcks(table)
    assert again.sent(0) == 8 and again.next_epoch(0) == 9


def test_a_visit_tags_its_messages_and_drops_those_acknowledged(
    domain: Any, catalog: CatalogView
) -> None:
    ledgers = MemoryStore()
    processor = EventProcessor(domain, catalog, ledgers, DedupeMarkers(MemoryStore()), WINDOWS)
    acks = OutboxAcks(MemoryStore())
    closer = PeriodCloser(processor, 4, acks)
    partition = partition_for(b"s1", 4)
    key = ledger_key("o1", "s1")
    counts: Counter[str] = Counter()
    feb = datetime(2026, 2, 1, 0, 0, 10, tzinfo=UTC)
    closer.plan("o1", "s1", 0.0)
    assert closer.run_due(partition, feb.timestamp(), feb, counts, 10) == [key]
    january = ledgers.get(key)
    assert january is not None
    assert [m["e"] for m in january["outbox"]] == [closer.epoch]
    assert list(closer.take_outboxes()) == [key]
    acks.acknowledged(partition, closer.epoch)
    # February closes: January's message, acknowledged, leaves the outbox with this write.
    march = datetime(2026, 3, 1, 0, 0, 10, tzinfo=UTC)
    closer.run_due(partition, march.timestamp(), march, counts, 10)
    value = ledgers.get(key)
    assert value is not None and counts["period_closed"] == 2
    assert [(m["value"]["period_end"], m["e"]) for m in value["outbox"]] == [
        ("2026-03-01T00:00:00+00:00", closer.epoch)
    ]
    assert closer.epoch > january["outbox"][0]["e"]


async def test_a_seed_sends_what_the_record_does_not_cover_before_any_new_epoch(
    domain: Any, catalog: CatalogView
) -> None:
    """After a restart, a message tagged above the record may be unsent: the seed sends it
    (the old way) before the closer tags anything, and new epochs go above its tag, so no
    later record vouches for it unsent."""
    ledgers, progress = MemoryStore(), MemoryStore()
    markers = DedupeMarkers(MemoryStore())
    processor = EventProcessor(domain, catalog, ledgers, markers, WINDOWS)
    acks = OutboxAcks(progress)
    partition = partition_for(b"s1", 4)
    progress.put(partition, f"o{partition}", {"sent": 3})
    value = new_ledger_value(partition)
    value["outbox"] = [{"id": 1, "e": 2, "topic": "x"}, {"id": 2, "e": 5, "topic": "x"}]
    ledgers.put(partition, ledger_key("o1", "s1"), value)
    flushed: list[dict[str, Any]] = []

    async def flush_outboxes(sent: dict[str, Any], epoch: Any = None) -> None:
        assert epoch is None  # each ledger rewritten, no record
        flushed.append(sent)

    worker = SimpleNamespace(
        settings=SimpleNamespace(
            bootstrap_servers="unused", topics=SimpleNamespace(events="e"), partitions=4
        ),
        closer=PeriodCloser(processor, 4, acks),
        catalog=catalog,
        markers=markers,
        ledgers=ledgers,
        outbox_acks=acks,
        generation=1,
        flush_outboxes=flush_outboxes,
        usage=lambda *ids: None,
    )
    driver = ClosingDriver(cast(Any, worker))
    assert await driver.seed(set(range(4)), 1)
    assert [list(sent) for sent in flushed] == [[ledger_key("o1", "s1")]]
    assert acks.next_epoch(partition) == 6
