"""An event's timestamp as the wire and Lago's answer write it, worked out once per value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from billing.events import parse_timestamp, wire_timestamp

Stamp = tuple[str, str]  # (wire timestamp: six-decimal epoch seconds, Lago's: ISO, ms, Z)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_10000 = 253_402_300_800  # epoch seconds a datetime cannot reach


def lago_instant(instant: datetime) -> str:
    """Lago's event timestamp format: UTC with milliseconds."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp_of_instant(instant: datetime) -> Stamp:
    return wire_timestamp(instant), lago_instant(instant)


def _stamp_of_seconds(seconds: int, micros: int) -> Stamp:
    instant = _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    return f"{seconds}.{micros:06d}", instant.isoformat(timespec="milliseconds")[:-6] + "Z"


@lru_cache(maxsize=65536, typed=True)  # typed: 1 and 1.0 are one key otherwise
def stamp_of(value: int | float | str) -> Stamp:
    """The stamp of a timestamp as Lago's API takes it (`billing.events.parse_timestamp`:
    epoch seconds as a number or a decimal string, or ISO 8601), sub-microsecond digits cut;
    raises `InvalidEvent` as that does.

    Numbers, what clients nearly always send, skip the Decimal arithmetic: an integer is
    whole seconds, and a float's shortest repr (what `parse_timestamp` reads through
    `Decimal(str(value))`) gives the digits to cut at six decimals. Anything else (a
    negative, an exponent, beyond year 9999, a string) is read the general way."""
    kind = type(value)
    if kind is int:
        if 0 <= value < _YEAR_10000:  # type: ignore[operator]
            return _stamp_of_seconds(value, 0)  # type: ignore[arg-type]
    elif kind is float:
        whole, dot, fraction = repr(value).partition(".")
        if dot and whole.isdigit() and fraction.isdigit() and int(whole) < _YEAR_10000:
            return _stamp_of_seconds(int(whole), int((fraction + "00000")[:6]))
    return stamp_of_instant(parse_timestamp(value))
