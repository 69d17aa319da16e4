"""A copy requeued from the dead-letter topic names its original in a header (which the
aggregator reads to let that one copy through its dedupe; see tests/e2e/test_operations.py)."""

from __future__ import annotations

from meterflow.event_records import REQUEUE_HEADER, requeue_header, requeued_from


def test_the_header_round_trips_as_pairs_or_a_mapping() -> None:
    name, value = requeue_header(3, 10240)
    assert requeued_from([(name, value)]) == (3, 10240)
    assert requeued_from({name: value}) == (3, 10240)
    assert requeued_from(None) is None
    assert requeued_from([("other", b"1:2")]) is None
    assert requeued_from([(REQUEUE_HEADER, b"not:a-position")]) is None
