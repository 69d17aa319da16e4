"""A copy requeued from the dead-letter topic names its original in a header; the dedupe
index then keeps the copy's (later) marker, whichever order the segments are read in."""

from __future__ import annotations

from aggregator.markers import DedupeMarkers, NewMarker
from aggregator.store import MemoryStore
from meterflow.event_records import REQUEUE_HEADER, requeue_header, requeued_from


def test_the_header_round_trips_as_pairs_or_a_mapping() -> None:
    name, value = requeue_header(3, 10240)
    assert requeued_from([(name, value)]) == (3, 10240)
    assert requeued_from({name: value}) == (3, 10240)
    assert requeued_from(None) is None
    assert requeued_from([("other", b"1:2")]) is None
    assert requeued_from([(REQUEUE_HEADER, b"not:a-position")]) is None


def test_the_requeued_copys_marker_wins_over_the_dead_lettered_original() -> None:
    key = "org\x1fsub\x1ftxn-1"
    original = NewMarker("org\x1fsub", "txn-1", 2, 100, "2030-01-01T00:00:00+00:00")
    copy = NewMarker("org\x1fsub", "txn-1", 2, 5000, "2030-01-02T00:00:00+00:00")
    store = MemoryStore()
    markers = DedupeMarkers(store)
    markers.write([original])
    markers.write([copy])
    assert markers.get(key) == (2, 5000)
    # Rebuilt from the table (after recovery), segments in the other order: the same.
    reversed_store = MemoryStore()
    for segment_key, value in reversed(list(store.items())):
        reversed_store.put(value["p"], segment_key, value)
    assert DedupeMarkers(reversed_store).get(key) == (2, 5000)
