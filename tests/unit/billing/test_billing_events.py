"""Validating usage events as Lago accepts them, and the Kafka wire schema round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import InvalidEvent
from billing.events import (
    UsageEvent,
    _canonical_event,
    _parse_general,
    event_from_wire,
    event_to_wire,
    parse_event,
)

RECEIVED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def event(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "transaction_id": "tx_1",
        "external_subscription_id": "sub_1",
        "code": "storage",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (None, RECEIVED),
        (1651240791, datetime(2022, 4, 29, 13, 59, 51, tzinfo=UTC)),
        ("1651240791", datetime(2022, 4, 29, 13, 59, 51, tzinfo=UTC)),
        ("1651240791.123", datetime(2022, 4, 29, 13, 59, 51, 123000, tzinfo=UTC)),
        (1651240791.5, datetime(2022, 4, 29, 13, 59, 51, 500000, tzinfo=UTC)),
        ("1651240791.1234567", datetime(2022, 4, 29, 13, 59, 51, 123456, tzinfo=UTC)),
        ("2022-04-29T08:59:51Z", datetime(2022, 4, 29, 8, 59, 51, tzinfo=UTC)),
        ("2022-04-29T08:59:51.123Z", datetime(2022, 4, 29, 8, 59, 51, 123000, tzinfo=UTC)),
        ("2022-04-29T10:59:51+02:00", datetime(2022, 4, 29, 8, 59, 51, tzinfo=UTC)),
        ("2022-04-29T08:59:51", datetime(2022, 4, 29, 8, 59, 51, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_timestamps(timestamp: object, expected: datetime) -> None:
    parsed = parse_event(event(timestamp=timestamp), received_at=RECEIVED)
    assert parsed.timestamp == expected
    assert parsed.timestamp.tzinfo is UTC


def test_a_full_event() -> None:
    parsed = parse_event(
        event(
            properties={"gb": 10, "region": "eu"},
            external_customer_id="cus_1",
            precise_total_amount_cents="1234.56",
        ),
        received_at=RECEIVED,
    )
    assert parsed == UsageEvent(
        "tx_1",
        "sub_1",
        "storage",
        RECEIVED,
        {"gb": 10, "region": "eu"},
        "cus_1",
        Decimal("1234.56"),
    )


# (raw event, field, words in the reason)
INVALID = [
    ("not an object", "event", "must be an object"),
    ([event()], "event", "must be an object"),
    (event(transaction_id=...), "transaction_id", "required"),
    (event(transaction_id=None), "transaction_id", "required"),
    (event(transaction_id=""), "transaction_id", "empty"),
    (event(transaction_id="  "), "transaction_id", "empty"),
    (event(transaction_id=12), "transaction_id", "must be a string, not a number"),
    (event(external_subscription_id=...), "external_subscription_id", "required"),
    (event(code=[]), "code", "must be a string, not an array"),
    (event(timestamp="yesterday"), "timestamp", "neither epoch seconds nor ISO 8601"),
    (event(timestamp=True), "timestamp", "boolean"),
    (event(timestamp=-1), "timestamp", "1970"),
    (event(timestamp=float("nan")), "timestamp", "finite"),
    (event(timestamp=10**20), "timestamp", "out of range"),
    (event(timestamp={"s": 1}), "timestamp", "not an object"),
    (event(properties=[1]), "properties", "must be an object"),
    (event(properties={"gb": float("inf")}), "properties.gb", "NaN or infinite"),
    (event(properties={"gb": object()}), "properties.gb", "JSON value"),
    (event(external_customer_id=5), "external_customer_id", "must be a string"),
    (event(precise_total_amount_cents="12,5"), "precise_total_amount_cents", "decimal"),
    (event(customer_id="cus_1"), "customer_id", "unknown field"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), INVALID)
def test_invalid_events_say_which_field_and_why(raw: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, received_at=RECEIVED)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_the_wire_timestamp_is_decimal_seconds_with_six_decimals() -> None:
    parsed = parse_event(event(timestamp="1651240791.123"), received_at=RECEIVED)
    wire = event_to_wire(parsed)
    assert wire == {
        "transaction_id": "tx_1",
        "external_subscription_id": "sub_1",
        "code": "storage",
        "timestamp": "1651240791.123000",
        "properties": {},
    }
    assert event_from_wire(wire) == parsed


def test_the_wire_needs_a_timestamp() -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_from_wire(event())
    assert caught.value.field == "timestamp"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)


@settings(max_examples=200, deadline=None)
@given(
    transaction_id=st.text(min_size=1, max_size=20).filter(str.strip),
    instant=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    properties=st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
    customer=st.one_of(st.none(), st.text(max_size=8)),
)
def test_wire_round_trip(
    transaction_id: str, instant: datetime, properties: dict[str, object], customer: str | None
) -> None:
    original = UsageEvent(transaction_id, "sub_1", "storage", instant, properties, customer)
    assert event_from_wire(event_to_wire(original)) == original


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
_STAMPS = st.one_of(
    st.integers(min_value=-10, max_value=10**12).map(lambda s: f"{s}.{s % 1000000:06d}"),
    st.builds(
        lambda s, f, digits: f"{s}.{f}"[: len(str(s)) + 1 + digits],
        st.integers(min_value=0, max_value=10**12),
        st.integers(min_value=0, max_value=10**7),
        st.integers(min_value=0, max_value=8),
    ),
    st.just("١٢٣.000000"),
    st.just("99999999999999999999.000000"),
    st.text(max_size=12),
    _SCALARS,
)


_TEXTS = st.text(min_size=1, max_size=4)


_CANONICAL = st.fixed_dictionaries(
    {
        "transaction_id": _TEXTS,
        "external_subscription_id": _TEXTS,
        "code": _TEXTS,
        "timestamp": st.integers(min_value=0, max_value=10**11).map(
            lambda m: f"{m}.{m % 999999:06d}"
        ),
    },
    optional={
        "properties": st.dictionaries(st.text(max_size=3), _SCALARS, max_size=3),
        "external_customer_id": st.one_of(st.none(), _TEXTS),
    },
)
_ANYTHING = st.fixed_dictionaries(
    {},
    optional={
        "transaction_id": st.one_of(_TEXTS, _SCALARS),
        "external_subscription_id": st.one_of(_TEXTS, _SCALARS),
        "code": st.one_of(_TEXTS, _SCALARS),
        "timestamp": _STAMPS,
        "properties": st.one_of(
            st.dictionaries(st.text(max_size=3), _SCALARS, max_size=3),
            st.dictionaries(st.text(max_size=3), st.lists(st.integers()), max_size=2),
            _SCALARS,
        ),
        "external_customer_id": st.one_of(_TEXTS, _SCALARS),
        "precise_total_amount_cents": st.one_of(st.just("1.5"), st.none()),
        "unknown": st.just(1),
    },
)


@settings(max_examples=500, deadline=None)
@given(fields=st.one_of(_CANONICAL, _ANYTHING))
def test_the_canonical_fast_path_gives_what_the_general_path_gives(
    fields: dict[str, object],
) -> None:
    """Whatever `_canonical_event` accepts, `_parse_general` accepts as the same event (and
    whatever it declines is left to the general path, which words the error)."""
    fast = _canonical_event(fields)
    hypothesis.event("fast path" if fast is not None else "general path")
    if fast is not None:
        assert fast == _parse_general(fields, RECEIVED)
        assert fast.properties == _parse_general(fields, RECEIVED).properties


def test_ingest_wire_events_take_the_fast_path() -> None:
    event = parse_event(
        {"transaction_id": "t", "external_subscription_id": "s", "code": "c"}, received_at=RECEIVED
    )
    wire = event_to_wire(event)
    assert _canonical_event(wire) == event
