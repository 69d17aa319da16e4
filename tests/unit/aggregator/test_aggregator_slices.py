"""A batch applied in slices (`EventProcessor.apply_batch` with a time budget, as the app
does to give the event loop back) counts exactly what it counts applied at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from aggregator.catalog_view import CatalogView
from aggregator.ledger import ledger_key
from aggregator.markers import DedupeMarkers
from aggregator.processing import EventProcessor, SourceMessage, Windows
from aggregator.store import MemoryStore
from meterflow.event_records import encode_pack

NOW = datetime(2026, 1, 20, tzinfo=UTC)
JAN_10 = datetime(2026, 1, 10, tzinfo=UTC).timestamp()
WINDOWS = Windows(skew=timedelta(hours=1), hold=timedelta(hours=1), late=timedelta(days=30))


def wire(txn: str, code: str = "calls") -> dict[str, Any]:
    return {
        "organization_id": "o1",
        "transaction_id": txn,
        "external_subscription_id": "s1",
        "code": code,
        "timestamp": JAN_10,
        "properties": {"gb": 2} if code == "gb" else {},
    }


def pack(*events: dict[str, Any]) -> bytes:
    return encode_pack([orjson.dumps(event) for event in events])


def batch() -> list[SourceMessage]:
    """Lone events and packs, with duplicates inside a pack and across records."""
    stamp = int(NOW.timestamp() * 1000)
    values = [
        orjson.dumps(wire("a")),
        pack(wire("b"), wire("c", "gb"), wire("b")),
        orjson.dumps(wire("a")),
        pack(wire("d"), wire("c", "gb"), wire("e", "gb")),
        orjson.dumps(wire("f")),
    ]
    return [SourceMessage(0, offset, b"s1", value, stamp) for offset, value in enumerate(values)]


def run(domain: Any, catalog: CatalogView, seconds: float) -> tuple[Any, dict[str, int], int]:
    """The batch applied as the app applies it: slice after slice, each slice's markers
    written before the next (`Aggregator.apply_slice`). The ledger, the counts, the slices."""
    ledgers, markers = MemoryStore(), MemoryStore(raw=True)
    processor = EventProcessor(domain, catalog, ledgers, DedupeMarkers(markers), WINDOWS)
    left, counts, slices = batch(), {}, 0
    while left:
        result = processor.apply_batch(left, NOW, seconds)
        assert result.taken >= 1
        processor.remember(result)
        for name, n in result.counts.items():
            counts[name] = counts.get(name, 0) + n
        left, slices = left[result.taken :], slices + 1
    return ledgers.get(ledger_key("o1", "s1")), counts, slices


def test_a_batch_in_slices_counts_what_it_counts_at_once(domain: Any, catalog: CatalogView) -> None:
    whole, whole_counts, one = run(domain, catalog, float("inf"))
    sliced, sliced_counts, many = run(domain, catalog, 0.0)
    assert (one, many) == (1, 5)  # no time left: one record a slice, at least one
    assert sliced_counts == whole_counts == {"applied": 6, "duplicate": 3}
    assert sliced["periods"] == whole["periods"]


def test_a_slice_finds_the_last_slices_markers_before_they_are_written(
    domain: Any, catalog: CatalogView
) -> None:
    """The app applies the next slice while the last one's ledgers are acknowledged: the
    last slice's markers are in the index at once (`index_batch`), their segments written
    later (`remember`), counted once; an index rebuilt in between (a rebalance) lacks them
    until they are written, which then adds them."""
    for rebuilt in (False, True):
        ledgers, segments = MemoryStore(), MemoryStore(raw=True)
        markers = DedupeMarkers(segments)
        processor = EventProcessor(domain, catalog, ledgers, markers, WINDOWS)
        left, pending, counts = batch(), [], {}
        while left:
            result = processor.apply_batch(left, NOW, 0.0)
            markers.index_batch(result.marks)
            pending.append(result)
            left = left[result.taken :]
            for name, n in result.counts.items():
                counts[name] = counts.get(name, 0) + n
        assert counts == {"applied": 6, "duplicate": 3} and segments.writes == 0
        assert len(markers) == 6
        if rebuilt:
            markers.invalidate()
        for result in pending:
            processor.remember(result)
        assert len(markers) == 6 and segments.writes == 4  # (one slice sets none)
        assert len(DedupeMarkers(segments)._ensured()) == 1  # one subscription, all six
        value = ledgers.get(ledger_key("o1", "s1"))
        assert value is not None and value["applied"] == {"0": 4 * 1024}
