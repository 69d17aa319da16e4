"""An event's timestamp as the wire and Lago's answer write it, from the digits it came with."""

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


@lru_cache(maxsize=4096)  # a stream's timestamps share their seconds
def _second(whole: str) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS` of whole epoch seconds (ASCII digits), None past year 9999."""
    seconds = int(whole)
    if seconds >= _YEAR_10000:
        return None
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]


@lru_cache(maxsize=4096)  # a stream's timestamps share their seconds
def _second_of(seconds: int) -> str | None:
    return _second(str(seconds))


def _from_micros(micros: int) -> Stamp | None:
    """The stamp of non-negative epoch microseconds."""
    seconds, fraction = divmod(micros, 1_000_000)
    second = _second_of(seconds)
    if second is None:
        return None
    # "1" and the fraction's six digits: zero-padded without a format spec (`:06d` costs
    # ten times str() on this Python).
    digits = str(fraction + 1_000_000)
    return f"{seconds}.{digits[1:]}", f"{second}.{digits[1:4]}Z"


def _micros_of_float(value: float) -> int | None:
    """The microseconds `parse_timestamp` reads from a float in [0, 2**32): its shortest
    repr's digits cut at six decimals, found without formatting the float (the repr costs
    about a microsecond here). Below 2**32 a float's neighbours are less than a microsecond
    apart, so at most one whole microsecond reads back as the float: if one does, the
    shortest repr is that one; if none does, the repr lies strictly between the same two
    whole microseconds as the float itself."""
    if not 0.0 <= value < 4294967296.0:
        return None
    numerator, denominator = value.as_integer_ratio()
    floor = numerator * 1_000_000 // denominator
    if (floor + 1) / 1_000_000 == value:  # correctly rounded, as reading its repr would be
        return floor + 1
    return floor


def _from_digits(whole: str, fraction: str) -> Stamp | None:
    """The stamp of `whole.fraction` epoch seconds, its fraction cut at six digits."""
    second = _second(whole)
    if second is None:
        return None
    micros = (fraction + "000000")[:6]
    return f"{whole}.{micros}", f"{second}.{micros[:3]}Z"


@lru_cache(maxsize=4096, typed=True)  # typed: 1 and 1.0 are one key otherwise
def _general(value: int | float | str) -> Stamp:
    return stamp_of_instant(parse_timestamp(value))


def stamp_of(value: int | float | str) -> Stamp:
    """The stamp of a timestamp as Lago's API takes it (`billing.events.parse_timestamp`:
    epoch seconds as a number or a decimal string, or ISO 8601), sub-microsecond digits cut;
    raises `InvalidEvent` as that does.

    Epoch seconds, what clients send, are read from their digits, without Decimal or
    datetime arithmetic: an integer's, a float's shortest repr (what `parse_timestamp` reads
    through `Decimal(str(value))`), or a plain decimal string's (ASCII digits, no sign, no
    leading zero, no blank). Anything else (a negative, an exponent, beyond year 9999, ISO
    8601) is read the general way."""
    kind = type(value)
    found: Stamp | None = None
    if kind is float:
        micros = _micros_of_float(value)  # type: ignore[arg-type]
        if micros is not None:
            found = _from_micros(micros)
    elif kind is int:
        if value >= 0:  # type: ignore[operator]
            found = _from_digits(str(value), "")
    elif kind is str:
        whole, dot, fraction = value.partition(".")  # type: ignore[union-attr]
        if (
            whole.isdigit()
            and whole.isascii()
            and (whole == "0" or whole[0] != "0")
            and (not dot or (fraction.isdigit() and fraction.isascii()))
        ):
            found = _from_digits(whole, fraction)
    return found if found is not None else _general(value)
