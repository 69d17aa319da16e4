"""The ingest fast paths against the full ones: the one-pass batch (`ingest.batch`) accepts
exactly what the full validation accepts, as the same records and answers; timestamps'
quick forms equal the general parse; the batch encoder writes the same records and answers
as the per-event functions; partitions follow Java's murmur2 and aiokafka's."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import InvalidEvent
from billing.events import parse_timestamp
from ingest.batch import accept_batch
from ingest.broker import Message
from ingest.events import Accepted, event_body, validate_event, wire_message
from ingest.stamps import stamp_of, stamp_of_instant
from meterflow.event_records import encode_event, encode_events, encode_packs, partition_for
from web.context import Organization
from web.errors import ValidationFailed

RECEIVED = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
ORG = Organization(
    id=uuid.UUID("6c4f1f0e-8e53-4c3a-9d61-1d9b0f3d2a11"), name="Acme", timezone="UTC"
)
BASE = {"transaction_id": "tx-1", "external_subscription_id": "sub-1", "code": "calls"}


Fast = tuple[list[Message], list[Any]]


def fast(*raws: Any) -> Fast | None:
    """The one-pass batch's records and answers (read back), or None if it declined."""
    body = orjson.dumps({"events": list(raws)})
    found = accept_batch(body, str(ORG.id), RECEIVED, 1000)
    if found is None:
        return None
    records = [(e.external_subscription_id.encode(), encode_event(e)) for e in found[0]]
    return records, orjson.loads(found[1])["events"]


def full(*raws: Any) -> Accepted:
    """The full validation's records and answers (raises ValidationFailed)."""
    out = Accepted(ORG, RECEIVED)
    for raw in raws:
        out.add(validate_event(raw, RECEIVED))
    return out


def same(a: Fast | None, b: Accepted) -> bool:
    return a is not None and a == (b.messages, orjson.loads(orjson.dumps(b.bodies)))


def as_json(raw: Any) -> Any:
    """What the server's general path reads from the JSON the client sent."""
    return orjson.loads(orjson.dumps(raw))


# Kafka's own test vectors (clients/src/test/.../utils/UtilsTest.java, testMurmur2).
@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
@pytest.mark.parametrize("count", [1, 4, 7, 12])
def test_partition_is_javas_murmur2_modulo_the_partition_count(
    key: bytes, java_murmur2: int, count: int
) -> None:
    assert partition_for(key, count) == (java_murmur2 & 0x7FFFFFFF) % count


@settings(max_examples=2000, deadline=None)
@given(key=st.binary(max_size=80), count=st.integers(min_value=1, max_value=64))
def test_partition_is_the_python_producers_partition_for_any_key(key: bytes, count: int) -> None:
    """Every key length (each tail of 0 to 3 bytes) and byte, against the partition
    aiokafka's producer gives the key (its pure-Python murmur2)."""
    assert partition_for(key, count) == (murmur2(key) & 0x7FFFFFFF) % count


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"timestamp": 1651240791},
        {"timestamp": 1651240791.123},
        {"timestamp": "1651240791.123456"},
        {"timestamp": "2026-03-01T10:00:00+05:30"},
        {"timestamp": "2026-03-01T10:00:00"},
        {"timestamp": None, "properties": None, "external_customer_id": None},
        {"properties": {"gb": 10, "region": "eu", "ok": True, "x": None, "f": 1.5}},
        {"properties": {}},
        {"external_customer_id": "cus-1"},
        {"external_customer_id": ""},
        {"transaction_id": " padded "},
    ],
)
def test_fast_path_accepts_common_events_as_the_full_validation_does(
    extra: dict[str, Any],
) -> None:
    raw = {**BASE, **extra}
    assert same(fast(raw), full(raw))
    # The same again in one request: timestamps are formatted once and reused.
    assert same(fast(raw, raw, BASE), full(raw, raw, BASE))


@pytest.mark.parametrize(
    "extra",
    [
        {"properties": {"nested": {"gb": 1}}},
        {"properties": {"list": [1, 2]}},
        {"precise_total_amount_cents": "12.5"},
    ],
)
def test_unusual_but_valid_events_take_the_full_path(extra: dict[str, Any]) -> None:
    raw = {**BASE, **extra}
    assert fast(raw) is None
    assert full(raw).messages


@pytest.mark.parametrize(
    ("raw", "details"),
    [
        ([], {"event": ["value_is_invalid"]}),
        ({**BASE, "colour": "red"}, {"colour": ["unknown_field"]}),
        ({**BASE, "code": None}, {"code": ["value_is_mandatory"]}),
        ({**BASE, "code": "  "}, {"code": ["value_is_invalid"]}),
        ({**BASE, "code": 3}, {"code": ["value_is_invalid"]}),
        ({**BASE, "timestamp": "yesterday"}, {"timestamp": ["value_is_invalid"]}),
        ({**BASE, "timestamp": -1}, {"timestamp": ["value_is_invalid"]}),
        ({**BASE, "timestamp": True}, {"timestamp": ["value_is_invalid"]}),
        ({**BASE, "properties": [1]}, {"properties": ["value_is_invalid"]}),
        ({**BASE, "properties": {"f": math.inf}}, {"properties.f": ["value_is_invalid"]}),
        ({**BASE, "external_customer_id": 5}, {"external_customer_id": ["value_is_invalid"]}),
    ],
)
def test_bad_events_get_the_full_paths_error(raw: Any, details: dict[str, Any]) -> None:
    if as_json(raw) == raw:  # JSON has no infinity (orjson writes null)
        assert fast(raw) is None
    with pytest.raises(ValidationFailed) as caught:
        validate_event(raw, RECEIVED)
    assert caught.value.error_details == details


scalars = st.one_of(
    st.none(),
    st.booleans(),
    # What a request's JSON can hold: orjson reads integers outside int64/uint64 as floats.
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
anything = (
    json_values
    | st.text(alphabet=" 0123456789.:-+TZab", max_size=28)
    | st.integers(min_value=-10, max_value=2**40)
)
ids = st.text(max_size=4) | anything
timestamps = (
    st.integers(min_value=-5, max_value=2**36)
    | st.floats(min_value=-1, max_value=4e9)
    | st.decimals(min_value=0, max_value=4e9, places=6).map(str)
    | st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat)
    | anything
)
raw_events = st.fixed_dictionaries(
    {"transaction_id": ids, "external_subscription_id": ids, "code": ids},
    optional={
        "timestamp": timestamps,
        "properties": st.dictionaries(st.text(max_size=4), scalars) | anything,
        "external_customer_id": ids,
        "precise_total_amount_cents": anything,
        "other": anything,
    },
)


@settings(max_examples=600, deadline=None)
@given(raw=raw_events)
def test_fast_path_accepts_nothing_more_and_writes_the_same(raw: dict[str, Any]) -> None:
    quick = fast(raw)
    try:
        checked = full(as_json(raw))
    except ValidationFailed:
        assert quick is None
        return
    assert quick is None or same(quick, checked)


def test_batch_encoding_equals_the_per_event_functions() -> None:
    raws = [
        BASE,
        {**BASE, "transaction_id": "tx-2", "timestamp": 1651240791.5},
        {**BASE, "transaction_id": "tx-3", "external_customer_id": "cus-1"},
        {**BASE, "transaction_id": "tx-4", "precise_total_amount_cents": "-12.50"},
        {**BASE, "transaction_id": "tx-5", "properties": {"a": {"b": [1, "x"]}}},
        {**BASE, "transaction_id": "tx-6", "timestamp": "2026-03-01T10:00:00.25+05:30"},
        {**BASE, "transaction_id": "tx-7", "external_subscription_id": "sübscription"},
    ]
    events = [validate_event(raw, RECEIVED) for raw in raws]
    out = full(*raws)
    assert out.messages == [wire_message(ORG, e) for e in events]
    assert out.bodies == [event_body(e, RECEIVED) for e in events]
    assert orjson.dumps(out.bodies) == orjson.dumps([event_body(e, RECEIVED) for e in events])


def test_a_timestamp_memo_tells_equal_keys_of_other_types_apart() -> None:
    raws = [{**BASE, "timestamp": 1}, {**BASE, "timestamp": 1.0}, {**BASE, "timestamp": "1"}]
    assert same(fast(*raws), full(*raws))
    assert fast({**BASE, "timestamp": 1}, {**BASE, "timestamp": True}) is None


@pytest.mark.parametrize("size", [0, 3])
def test_a_batch_outside_its_limits_takes_the_full_path(size: int) -> None:
    body = orjson.dumps({"events": [BASE] * size})
    assert accept_batch(body, str(ORG.id), RECEIVED, 2) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"events": {}}', b'{"events": [], "x": 1}', b'{"events": [{"a": 1}]}'],
)
def test_a_body_of_another_shape_takes_the_full_path(body: bytes) -> None:
    assert accept_batch(body, str(ORG.id), RECEIVED, 9) is None


@settings(max_examples=800, deadline=None)
@given(
    value=st.integers(min_value=-5, max_value=2**40)
    | st.floats(min_value=-1, max_value=3e11, allow_nan=False)
    | st.floats(min_value=0, max_value=1e-3)
    | st.integers(min_value=0, max_value=2**32 * 10**7).map(lambda n: n / 10**7)
    | st.integers(min_value=0, max_value=2**32 * 10**6).map(lambda n: n / 10**6)
    | st.integers(min_value=0, max_value=2**32 * 10**3).map(lambda n: n / 10**3)
    | st.decimals(min_value=0, max_value=4e9, places=7).map(str)
    | st.integers(min_value=0, max_value=2**36).map(str)
    | st.text(alphabet="0123456789. e-+", max_size=14)
)
def test_a_numbers_quick_stamp_equals_the_general_parse(value: Any) -> None:
    assert_stamped_as_the_general_parse(value)


def assert_stamped_as_the_general_parse(value: Any) -> None:
    try:
        expected = stamp_of_instant(parse_timestamp(value))
    except InvalidEvent:
        with pytest.raises(InvalidEvent):
            stamp_of(value)
        return
    assert stamp_of(value) == expected


@pytest.mark.parametrize(
    "value",
    ["0001.5", "00.5", "0.5", "12", " 12.5", "12.", ".5", "1e3", "12.5000009", "\u0661\u0662.5",
     "2026-03-01T10:00:00.123456+05:30", 253402300799.999, 253402300800, 0, 0.0, 1e-7, True,
     4294967295.9999995, 4294967296.0, 4294967296.000001, 1795794123.0000005, 0.0000015],
)  # fmt: skip
def test_unusual_timestamps_stamp_as_the_general_parse(value: Any) -> None:
    assert_stamped_as_the_general_parse(value)


@pytest.mark.parametrize(
    ("events", "max_bytes"), [(1, 10_000), (5, 10_000), (5, 300), (1030, 10**7)]
)
def test_a_partitions_events_encode_as_one_pack_or_each_alone(events: int, max_bytes: int) -> None:
    wires = accept_batch(
        orjson.dumps({"events": [{**BASE, "transaction_id": f"tx-{i}"} for i in range(events)]}),
        str(ORG.id),
        RECEIVED,
        2000,
    )
    assert wires is not None
    alone = [encode_event(e) for e in wires[0]]
    packs = encode_packs(alone, max_bytes)
    parts = encode_events(wires[0], max_bytes)
    if len(packs) == 1:  # fits one record: the same pack, encoded in one call
        assert parts == [(packs[0], events)]
    else:  # the lane packs them as they fit
        assert parts == [(value, 1) for value in alone]
