"""Reading an aggregation state's JSON snapshot back (`from_dict`): each reader names the
field it found malformed (ValueError)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from billing.money import as_decimal


def require_type(data: Mapping[str, object], aggregation_type: str) -> None:
    if data.get("type") != aggregation_type:
        raise ValueError(f"not a {aggregation_type} snapshot: type={data.get('type')!r}")


def read_int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"snapshot field {key!r} must be a non-negative int, got {value!r}")
    return value


def read_str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"snapshot field {key!r} must be a string, got {value!r}")
    return value


def parse_decimal(text: object, key: str) -> Decimal:
    if not isinstance(text, str):
        raise ValueError(f"snapshot field {key!r} must be a decimal string, got {text!r}")
    try:
        return as_decimal(text)
    except ValueError as exc:
        raise ValueError(f"snapshot field {key!r} must be a finite decimal, got {text!r}") from exc


def parse_instant(text: object, key: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"snapshot field {key!r} must be an ISO 8601 string, got {text!r}")
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        raise ValueError(f"snapshot field {key!r} must carry an offset, got {text!r}")
    return instant.astimezone(UTC)
