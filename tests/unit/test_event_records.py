"""The events topic's record format: packs split by count and size, keep order, and read
back as the events they were made of."""

from __future__ import annotations

import orjson
import pytest

from meterflow.event_records import (
    PACK_LIMIT,
    decode_record,
    encode_pack,
    encode_packs,
    packs,
    partition_for,
    position,
)


def events(n: int, size: int = 10) -> list[bytes]:
    return [orjson.dumps({"n": i, "pad": "x" * size}) for i in range(n)]


def test_a_lone_event_stays_an_object_and_a_pack_is_an_array() -> None:
    one, two = events(2)
    assert encode_pack([one]) == one
    assert decode_record(encode_pack([one])) == [orjson.loads(one)]
    assert decode_record(encode_pack([one, two])) == [orjson.loads(one), orjson.loads(two)]
    with pytest.raises(ValueError):
        encode_pack([])


@pytest.mark.parametrize(
    ("count", "max_bytes"), [(1, 100), (5, 10_000), (2500, 10**9), (300, 2000)]
)
def test_packs_keep_every_event_in_order_within_both_limits(count: int, max_bytes: int) -> None:
    encoded = events(count)
    values = encode_packs(encoded, max_bytes)
    assert [item for value in values for item in decode_record(value)] == [
        orjson.loads(e) for e in encoded
    ]
    assert all(len(decode_record(v)) <= PACK_LIMIT for v in values)
    assert all(len(v) <= max_bytes for v in values)


def test_an_event_larger_than_the_limit_travels_alone() -> None:
    small, big = events(1)[0], orjson.dumps({"pad": "y" * 500})
    values = encode_packs([small, big, small], 100)
    assert values == [small, big, small]


def test_packs_group_by_partition_and_positions_grow_with_offset_then_index() -> None:
    pairs = [(f"s{i % 7}".encode(), e) for i, e in enumerate(events(40))]
    records = packs(pairs, 4)
    for partition, value in records:
        keys = {f"s{item['n'] % 7}".encode() for item in decode_record(value)}
        assert {partition_for(key, 4) for key in keys} == {partition}
    assert sum(len(decode_record(v)) for _, v in records) == 40
    assert position(5, PACK_LIMIT - 1) < position(6, 0)
