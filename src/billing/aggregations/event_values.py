"""Reading the value an aggregation needs out of an event's properties, or saying why not."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from billing.errors import InvalidEvent

# What Postgres' numeric cast (Lago's) accepts, minus Python's extras such as "1_000",
# "NaN" or "Infinity", which would otherwise slip through Decimal().
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

# Beyond this a value is a producer bug, not usage; it also keeps every sum exact.
_MAX_MAGNITUDE = Decimal("1e30")


def _field_path(field_name: str) -> str:
    return f"properties.{field_name}"


def _present(properties: Mapping[str, object] | None, field_name: str) -> object:
    if properties is None or field_name not in properties:
        raise InvalidEvent(f"property {field_name!r} is missing", _field_path(field_name))
    value = properties[field_name]
    if value is None:
        raise InvalidEvent(f"property {field_name!r} is null", _field_path(field_name))
    return value


def numeric_property(properties: Mapping[str, object] | None, field_name: str) -> Decimal:
    """The property as an exact Decimal: an int, a float (through its shortest repr) or a
    numeric string. Missing, null, boolean, non-numeric, NaN and infinite values are refused."""
    value = _present(properties, field_name)
    if isinstance(value, str):  # the common case: ingest keeps a number's text as sent
        number = _numeric_text(value)
        if number is None:
            raise InvalidEvent(
                f"property {field_name!r} is not a number: {value[:40]!r}", _field_path(field_name)
            )
    elif isinstance(value, bool):
        raise InvalidEvent(
            f"property {field_name!r} is a boolean, not a number", _field_path(field_name)
        )
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if math.isnan(value):
            raise InvalidEvent(f"property {field_name!r} is NaN", _field_path(field_name))
        if math.isinf(value):
            raise InvalidEvent(f"property {field_name!r} is infinite", _field_path(field_name))
        # str() gives the shortest repr that round-trips: 0.1 becomes Decimal("0.1"), not
        # the binary expansion 0.1000000000000000055511151231257827...
        number = Decimal(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidEvent(
                f"property {field_name!r} is not a finite number", _field_path(field_name)
            )
        number = value
    else:
        raise InvalidEvent(
            f"property {field_name!r} is a {type(value).__name__}, not a number",
            _field_path(field_name),
        )
    if abs(number) >= _MAX_MAGNITUDE:
        raise InvalidEvent(
            f"property {field_name!r} is too large (>= 1e30)", _field_path(field_name)
        )
    return number


@lru_cache(maxsize=65536)
def _numeric_text(value: str) -> Decimal | None:
    """The Decimal a numeric string spells, None when it is not one (cached: usage values
    repeat, and the pattern and the parse cost more than the rest of reading an event)."""
    text = value.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already vetted it
        return None


def unique_property(properties: Mapping[str, object] | None, field_name: str) -> str:
    """The property as the text Lago compares for distinct counts (JSON scalar text)."""
    value = _present(properties, field_name)
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return json.dumps(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(
                f"property {field_name!r} is not a finite number", _field_path(field_name)
            )
        return json.dumps(value)
    if isinstance(value, Decimal):
        return str(value)
    raise InvalidEvent(
        f"property {field_name!r} is a {type(value).__name__}; a distinct count needs a string "
        "or a number",
        _field_path(field_name),
    )
