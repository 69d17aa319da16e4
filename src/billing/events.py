"""Usage events: validating Lago's event input and the one wire schema used on Kafka.

Wire schema (the value of a record on the `events` topic, JSON, keyed by
external_subscription_id). HTTP ingest and producers writing to Kafka directly share it:

    {
      "transaction_id": "tx_1",               non-empty string
      "external_subscription_id": "sub_1",    non-empty string
      "code": "storage",                      non-empty string (a billable metric's code)
      "timestamp": "1651240791.123000",       decimal seconds since the Unix epoch, UTC,
                                              always six decimals (microseconds)
      "properties": {"gb": 10},               object (may be empty)
      "external_customer_id": "cus_1",        optional string
      "precise_total_amount_cents": "12.5"    optional decimal string
    }

`event_from_wire` reads it back with the same validation as `parse_event`, except that the
timestamp is required. Any other top-level field is refused, on the wire as over HTTP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from billing.errors import InvalidEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REQUIRED = ("transaction_id", "external_subscription_id", "code")
_OPTIONAL = ("timestamp", "properties", "external_customer_id", "precise_total_amount_cents")
_KNOWN = frozenset(_REQUIRED + _OPTIONAL)
_DECIMAL_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_DECIMAL_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_PROPERTY_DEPTH = 32


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One accepted usage event; unique by (external_subscription_id, transaction_id)."""

    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: datetime
    properties: dict[str, object] = field(default_factory=dict, hash=False)
    external_customer_id: str | None = None
    precise_total_amount_cents: Decimal | None = None

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"an event timestamp must be timezone-aware: {self.timestamp!r}")
        object.__setattr__(self, "timestamp", self.timestamp.astimezone(UTC))


def _required_string(raw: Mapping[str, object], name: str) -> str:
    if name not in raw or raw[name] is None:
        raise InvalidEvent(f"{name} is required", name)
    value = raw[name]
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, not {_json_type(value)}", name)
    if not value.strip():
        raise InvalidEvent(f"{name} must not be empty", name)
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _from_epoch_seconds(seconds: Decimal) -> datetime:
    if seconds < 0:
        raise InvalidEvent("timestamp must not precede 1970-01-01T00:00:00Z", "timestamp")
    # Sub-microsecond digits are truncated: a datetime holds microseconds.
    micros = int((seconds * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError as exc:
        raise InvalidEvent(f"timestamp {seconds} is out of range", "timestamp") from exc


def parse_timestamp(value: object) -> datetime:
    """Epoch seconds (int, float or decimal string, with optional fraction) or an ISO 8601
    string, as a UTC datetime; an ISO string without an offset is read as UTC."""
    if isinstance(value, bool):
        raise InvalidEvent("timestamp must be a number or a string, not a boolean", "timestamp")
    if isinstance(value, int):
        return _from_epoch_seconds(Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent("timestamp must be a finite number", "timestamp")
        return _from_epoch_seconds(Decimal(str(value)))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidEvent("timestamp must be a finite number", "timestamp")
        return _from_epoch_seconds(value)
    if not isinstance(value, str):
        raise InvalidEvent(
            f"timestamp must be a number or a string, not {_json_type(value)}", "timestamp"
        )
    text = value.strip()
    if _DECIMAL_SECONDS.fullmatch(text):
        return _from_epoch_seconds(Decimal(text))
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidEvent(
            f"timestamp {value[:40]!r} is neither epoch seconds nor ISO 8601", "timestamp"
        ) from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        return instant.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidEvent(f"timestamp {value[:40]!r} is out of range", "timestamp") from exc


def _check_json(value: object, path: str, depth: int = 0) -> None:
    if depth > _MAX_PROPERTY_DEPTH:
        raise InvalidEvent("properties are nested too deeply", path)
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent("a property must not be NaN or infinite", path)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEvent("property names must be strings", path)
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    raise InvalidEvent(f"a property must be a JSON value, not {type(value).__name__}", path)


def _properties(raw: Mapping[str, object]) -> dict[str, object]:
    value = raw.get("properties")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"properties must be an object, not {_json_type(value)}", "properties")
    _check_json(value, "properties")
    return dict(value)


def _optional_string(raw: Mapping[str, object], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, not {_json_type(value)}", name)
    return value


def _precise_total(raw: Mapping[str, object]) -> Decimal | None:
    value = raw.get("precise_total_amount_cents")
    if value is None:
        return None
    name = "precise_total_amount_cents"
    if isinstance(value, bool):
        raise InvalidEvent(f"{name} must be a decimal string", name)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_AMOUNT.fullmatch(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation as exc:  # pragma: no cover - the pattern already vetted it
            raise InvalidEvent(f"{name} must be a decimal string", name) from exc
    raise InvalidEvent(f"{name} must be a decimal string such as '1234.56'", name)


def flat_properties(properties: object) -> dict[str, object] | None:
    """`properties` when absent (as `{}`) or an object of scalar JSON values, what nearly
    every event sends; None for anything else, which the general validation then judges."""
    if properties is None:
        return {}
    if type(properties) is not dict:
        return None
    for value in properties.values():
        kind = type(value)
        if not (kind is str or kind is int or kind is bool or value is None) and not (
            kind is float and math.isfinite(value)
        ):
            return None
    return properties


def instant_of_wire_timestamp(timestamp: str) -> datetime:
    """The UTC instant of a canonical wire timestamp (digits, a dot, six digits); ValueError
    when it is not one or is out of range."""
    seconds, dot, fraction = timestamp.partition(".")
    if not (
        dot
        and len(fraction) == 6
        and seconds.isascii()
        and seconds.isdigit()
        and fraction.isascii()
        and fraction.isdigit()
    ):
        raise ValueError(f"not a wire timestamp: {timestamp[:40]!r}")
    try:
        return _EPOCH + timedelta(seconds=int(seconds), microseconds=int(fraction))
    except OverflowError as exc:
        raise ValueError(f"timestamp {timestamp[:40]!r} is out of range") from exc


def _canonical_event(raw: object) -> UsageEvent | None:
    """The event if `raw` is in the wire schema's canonical form (what ingest writes: the
    six-decimal timestamp string, flat properties, no precise amount), else None.

    The common case of `parse_event`, checked in a few type tests instead of the general
    path: the two give the same event for every input this accepts (a property-based test
    holds them to it), and anything unusual goes the general way, which also words errors.
    """
    if type(raw) is not dict or not raw.keys() <= _KNOWN:
        return None
    transaction_id = raw.get("transaction_id")
    subscription_id = raw.get("external_subscription_id")
    code = raw.get("code")
    timestamp = raw.get("timestamp")
    customer_id = raw.get("external_customer_id")
    properties = raw.get("properties")
    if (
        type(transaction_id) is not str
        or type(subscription_id) is not str
        or type(code) is not str
        or type(timestamp) is not str
        or not transaction_id.strip()
        or not subscription_id.strip()
        or not code.strip()
        or (customer_id is not None and type(customer_id) is not str)
        or raw.get("precise_total_amount_cents") is not None
    ):
        return None
    try:
        instant = instant_of_wire_timestamp(timestamp)
    except ValueError:
        return None
    flat = flat_properties(properties)
    if flat is None:
        return None
    return UsageEvent(
        transaction_id=transaction_id,
        external_subscription_id=subscription_id,
        code=code,
        timestamp=instant,
        properties=dict(flat),
        external_customer_id=customer_id,
    )


def parse_event(raw: object, *, received_at: datetime) -> UsageEvent:
    """Validate one event as Lago's API accepts it (the object inside `{"event": ...}`).

    The timestamp defaults to `received_at`. Raises InvalidEvent naming the first bad field.
    """
    fast = _canonical_event(raw)
    return fast if fast is not None else _parse_general(raw, received_at)


def _parse_general(raw: object, received_at: datetime) -> UsageEvent:
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"an event must be an object, not {_json_type(raw)}", "event")
    unknown = sorted(str(key) for key in raw if key not in _KNOWN)
    if unknown:
        raise InvalidEvent(
            f"unknown field {unknown[0]!r}; an event accepts {', '.join(sorted(_KNOWN))}",
            unknown[0],
        )
    transaction_id, external_subscription_id, code = (_required_string(raw, n) for n in _REQUIRED)
    raw_timestamp = raw.get("timestamp")
    timestamp = received_at if raw_timestamp is None else parse_timestamp(raw_timestamp)
    return UsageEvent(
        transaction_id=transaction_id,
        external_subscription_id=external_subscription_id,
        code=code,
        timestamp=timestamp,
        properties=_properties(raw),
        external_customer_id=_optional_string(raw, "external_customer_id"),
        precise_total_amount_cents=_precise_total(raw),
    )


def wire_timestamp(instant: datetime) -> str:
    """Decimal epoch seconds with exactly six decimals ("1651240791.123000")."""
    delta = instant.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


def event_to_wire(event: UsageEvent) -> dict[str, object]:
    """The event as the Kafka wire schema's JSON object (see the module docstring)."""
    wire: dict[str, object] = {
        "transaction_id": event.transaction_id,
        "external_subscription_id": event.external_subscription_id,
        "code": event.code,
        "timestamp": wire_timestamp(event.timestamp),
        "properties": event.properties,
    }
    if event.external_customer_id is not None:
        wire["external_customer_id"] = event.external_customer_id
    if event.precise_total_amount_cents is not None:
        wire["precise_total_amount_cents"] = str(event.precise_total_amount_cents)
    return wire


def event_from_wire(wire: object) -> UsageEvent:
    """Read a wire record back; unlike HTTP input, its timestamp is required."""
    if isinstance(wire, Mapping) and wire.get("timestamp") is None:
        raise InvalidEvent("timestamp is required on the wire", "timestamp")
    # received_at is never used: the timestamp is present.
    return parse_event(wire, received_at=_EPOCH)
