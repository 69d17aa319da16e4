"""`db.new_ids`: time-ordered (version 7) UUIDs, each drawn anew, in increasing order."""

from __future__ import annotations

import time
import uuid

from meterflow import db


def test_ids_are_distinct_increasing_version_7_uuids_of_now() -> None:
    before = time.time_ns() // 1_000_000
    ids = db.new_ids(1000)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122), text
        assert parsed.hex == text
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: the millisecond


def test_every_bit_after_the_millisecond_varies_but_version_and_variant() -> None:
    ids = [uuid.UUID(text).int for text in db.new_ids(256)]
    varies = 0
    for a in ids[1:]:
        varies |= a ^ ids[0]
    random_bits = (2**80 - 1) ^ ((0xF << 76) | (0x3 << 62))  # all but version and variant
    assert varies == random_bits


def test_one_at_a_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [db.new_id() for _ in range(256)]
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert all(before <= i.int >> 80 <= time.time_ns() // 1_000_000 for i in ids)
    varies = 0
    for i in ids[1:]:
        varies |= (i.int ^ ids[0].int) & (2**80 - 1)
    assert varies == (2**80 - 1) ^ ((0xF << 76) | (0x3 << 62))


def test_none() -> None:
    assert db.new_ids(0) == []
