"""`db.random_ids`: version 4 UUIDs, each drawn anew."""

from __future__ import annotations

import uuid

from meterflow import db


def test_ids_are_distinct_version_4_uuids() -> None:
    ids = db.random_ids(1000)
    assert len(set(ids)) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122), text
        assert parsed.hex == text


def test_every_bit_but_version_and_variant_varies() -> None:
    ids = [uuid.UUID(text).int for text in db.random_ids(256)]
    varies = 0
    for a in ids[1:]:
        varies |= a ^ ids[0]
    fixed = (0xF << 76) | (0x3 << 62)  # the version nibble and the variant bits
    assert varies == (2**128 - 1) ^ fixed


def test_none() -> None:
    assert db.random_ids(0) == []
