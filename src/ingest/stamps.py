"""An event's timestamp as the wire and Lago's answer write it, from the digits it came with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from billing.events import parse_timestamp, wire_timestamp

Stamp = tuple[str, str]  # (wire timestamp: six-decimal epoch seconds, Lago's: ISO, ms, Z)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_YEAR_10000 = 253_402_300_800  # epoch seconds a datetime cannot reach
# Whole epoch seconds -> the stamp's two prefixes, "<seconds>." and "YYYY-MM-DDTHH:MM:SS."
# A plain dict, emptied when full: a lookup costs less than an lru_cache call, and a
# stream's timestamps share their seconds.
_PREFIXES: dict[int, tuple[str, str]] = {}
_MAX_PREFIXES = 4096


def lago_instant(instant: datetime) -> str:
    """Lago's event timestamp format: UTC with milliseconds."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp_of_instant(instant: datetime) -> Stamp:
    return wire_timestamp(instant), lago_instant(instant)


def micros_of_instant(instant: datetime) -> int:
    """Epoch microseconds of an aware instant."""
    return (instant - _EPOCH) // _MICROSECOND


def second_of(seconds: int) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS` of non-negative whole epoch seconds, None past year 9999."""
    prefixes = _PREFIXES.get(seconds) or _prefixes(seconds)
    return prefixes[1][:-1] if prefixes else None


def _prefixes(seconds: int) -> tuple[str, str] | None:
    if seconds >= _YEAR_10000:
        return None
    if len(_PREFIXES) >= _MAX_PREFIXES:
        _PREFIXES.clear()
    second = (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
    found = _PREFIXES[seconds] = (f"{seconds}.", f"{second}.")
    return found


@lru_cache(maxsize=4096)  # a stream's timestamps share their seconds
def _second(whole: str) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS` of whole epoch seconds (ASCII digits), None past year 9999."""
    return second_of(int(whole))


def stamp_of_micros(micros: int) -> Stamp | None:
    """The stamp of non-negative epoch microseconds; None past year 9999."""
    seconds, fraction = divmod(micros, 1_000_000)
    prefixes = _PREFIXES.get(seconds) or _prefixes(seconds)
    if prefixes is None:
        return None
    # "1" and the fraction's six digits: zero-padded without a format spec (`:06d` costs
    # ten times str() on this Python).
    digits = str(fraction + 1_000_000)
    return prefixes[0] + digits[1:], prefixes[1] + digits[1:4] + "Z"


def _exact_micros(value: float) -> int:
    """The microseconds `parse_timestamp` reads from a float in [0, 2**32): its shortest
    repr's digits cut at six decimals, found without formatting the float (the repr costs
    about a microsecond here). Below 2**32 a float's neighbours are less than a microsecond
    apart, so at most one whole microsecond reads back as the float: if one does, the
    shortest repr is that one (or a shorter spelling of it); if none does, the repr lies
    strictly between the same two whole microseconds as the float itself. `stamp_of` tries
    the nearest whole microsecond in float arithmetic first; this is the exact reading."""
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
    found: Stamp | None = None
    if type(value) is float:
        if 0.0 <= value < 4294967296.0:
            # The nearest whole microsecond, which is the one if any reads back as the
            # float (an error in the product only sends it to `_exact_micros`); then
            # `stamp_of_micros`, inline: this runs for every event of a batch.
            micros = round(value * 1_000_000)
            if micros / 1_000_000 != value:
                micros = _exact_micros(value)
            whole_seconds, part = divmod(micros, 1_000_000)
            prefixes = _PREFIXES.get(whole_seconds) or _prefixes(whole_seconds)
            if prefixes is not None:
                digits = str(part + 1_000_000)
                return prefixes[0] + digits[1:], prefixes[1] + digits[1:4] + "Z"
    elif type(value) is int:
        if value >= 0:
            prefixes = _PREFIXES.get(value) or _prefixes(value)
            if prefixes is not None:
                return prefixes[0] + "000000", prefixes[1] + "000Z"
    elif type(value) is str:
        whole, dot, fraction = value.partition(".")
        if (
            whole.isdigit()
            and whole.isascii()
            and (whole == "0" or whole[0] != "0")
            and (not dot or (fraction.isdigit() and fraction.isascii()))
        ):
            found = _from_digits(whole, fraction)
    return found if found is not None else _general(value)
