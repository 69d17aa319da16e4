"""The msgspec fast path of `parse_message` reads every message exactly as the checked path
does: the same PeriodClosed, or the same PoisonMessage (reason and detail)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.invoicer.test_invoicer_messages import message

from invoicing.closed_period import (
    _fast_period_closed,
    _late_usage,
    _object,
    _period_closed,
    parse_message,
)
from invoicing.errors import PoisonMessage

UPPER_UUID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"


def _charge(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        m["charges"][0].update(changes)

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.pop(name)


# Each variant changes the valid message: accepted ones (loose fields, uuids to normalise,
# offsets, big numbers) and refused ones (wrong types, bad instants, units, uuids).
VARIANTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "as is": lambda m: None,
    "no optional fields": lambda m: [
        m.pop(k) for k in ("external_customer_id", "plan_code", "terminated", "closed_at")
    ],
    "nulls": lambda m: m.update(
        external_customer_id=None, plan_code=None, terminated=None, closed_at=None
    ),
    "numeric customer": lambda m: m.update(external_customer_id=12, plan_code=1.5),
    "huge customer number": lambda m: m.update(external_customer_id=10**30),
    "terminated as text": lambda m: m.update(terminated="yes"),
    "terminated 0": lambda m: m.update(terminated=0),
    "closed_at a number": lambda m: m.update(closed_at=5),
    "closed_at naive": lambda m: m.update(closed_at="2026-02-01T00:05:00"),
    "offset instants": lambda m: m.update(
        period_start="2026-01-01T05:30:00+05:30", period_end="2026-01-31T23:00:00-01:00"
    ),
    "naive start": lambda m: m.update(period_start="2026-01-01T00:00:00"),
    "not iso": lambda m: m.update(period_end="tomorrow"),
    "end before start": lambda m: m.update(period_end="2025-01-01T00:00:00Z"),
    "upper-case uuid": lambda m: m.update(subscription_id=UPPER_UUID),
    "bad uuid": lambda m: m.update(organization_id="nope"),
    "charge upper-case uuid": _charge(charge_id=UPPER_UUID),
    "units not finite": _charge(units="NaN"),
    "units a number": _charge(units=12.5),
    "units not decimal": _charge(units="twelve"),
    "events_count a bool": _charge(events_count=True),
    "events_count a float": _charge(events_count=3.0),
    "events_count huge": _charge(events_count=10**30),
    "events_count max uint64": _charge(events_count=2**64 - 1),
    "aggregation null": _charge(aggregation=None),
    "aggregation empty list": _charge(aggregation=[]),
    "aggregation a list": _charge(aggregation=[1]),
    "aggregation huge number": _charge(aggregation={"type": "max_agg", "value": 10**30}),
    "charge not an object": lambda m: m.update(charges=[1]),
    "charges missing": _drop("charges"),
    "currency null": lambda m: m.update(currency=None),
    "period_key missing": _drop("period_key"),
    "type null": lambda m: m.update(type=None),
    "type unknown": lambda m: m.update(type="other"),
    "type period_closed": lambda m: m.update(type="period_closed"),
    "adjustments null": lambda m: m.update(adjustments=None),
    "adjustments an object": lambda m: m.update(adjustments={}),
    "adjustments not objects": lambda m: m.update(adjustments=[1]),
    "extra field": lambda m: m.update(extra={"a": [1, 2]}),
}


def _checked(value: bytes) -> Any:
    """What the checked path alone makes of the message (or the poison it raises)."""
    try:
        raw = _object(value)
        kind = raw.get("type", "period_closed")
        if kind == "late_usage":
            return _late_usage(raw)
        if kind != "period_closed":
            return ("poison", "invalid_message", f"unknown message type {kind!r}")
        return _period_closed(raw)
    except PoisonMessage as exc:
        return ("poison", exc.reason, exc.detail)


def _parsed(value: bytes) -> Any:
    try:
        return parse_message(value)
    except PoisonMessage as exc:
        return ("poison", exc.reason, exc.detail)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_fast_path_reads_as_the_checked_path(name: str) -> None:
    m = message()
    VARIANTS[name](m)
    value = json.dumps(m).encode()  # the standard library writes integers of any size
    assert _parsed(value) == _checked(value)


@pytest.mark.parametrize(
    "value", [b"", b"not json", b"[1]", b"{}", b'{"a": NaN}', b"[" * 3000 + b"]" * 3000]
)
def test_the_fast_path_refuses_what_the_checked_path_refuses(value: bytes) -> None:
    assert _parsed(value) == _checked(value)


def test_the_common_message_takes_the_fast_path() -> None:
    value = json.dumps(message()).encode()
    assert _fast_period_closed(value) == _checked(value)
