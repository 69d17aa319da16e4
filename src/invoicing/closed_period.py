"""The messages of periods-closed read and checked, or a PoisonMessage: `PeriodClosed` (a
period's final totals, `type` "period_closed" or absent) and `LateUsage` (`type`
"late_usage": events that arrived after their period closed, sent on their own)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any

import msgspec
import orjson

from billing.money import as_decimal
from billing.value import value
from invoicing.errors import PoisonMessage


@value
class ChargeUsage:
    """A charge's final totals over one period, as the aggregator closed them."""

    charge_id: str
    charge_model: str
    billable_metric_id: str
    billable_metric_code: str
    aggregation_type: str
    units: Decimal
    events_count: int
    aggregation: Mapping[str, Any]


@value
class Adjustment:
    """Late events of a period already closed (and invoiced), to bill on this invoice."""

    period_start: datetime
    period_end: datetime
    charges: tuple[ChargeUsage, ...]


@value
class PeriodClosed:
    period_key: str
    organization_id: str
    subscription_id: str
    external_subscription_id: str
    external_customer_id: str
    plan_code: str
    currency: str
    period_start: datetime
    period_end: datetime
    terminated: bool
    charges: tuple[ChargeUsage, ...]
    adjustments: tuple[Adjustment, ...]
    closed_at: datetime | None


@value
class LateUsage:
    """Totals of the events that arrived for an already closed period since the last such
    message; `late_key` is unique per message (a resend carries the same one)."""

    late_key: str
    period_key: str
    organization_id: str
    subscription_id: str
    external_subscription_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    charges: tuple[ChargeUsage, ...]

    @property
    def adjustments(self) -> tuple[Adjustment, ...]:
        """Its charges as one adjustment of its period (how a later invoice bills it)."""
        return (Adjustment(self.period_start, self.period_end, self.charges),)


def _field(raw: Mapping[str, Any], name: str, kind: type, where: str = "") -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PoisonMessage("invalid_message", f"{where}{name} must be a {kind.__name__}")
    return value


# A uuid as str(uuid.UUID(...)) writes it: taken as it is, without building one.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(raw: Mapping[str, Any], name: str, where: str = "") -> str:
    text: str = _field(raw, name, str, where)
    if _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise PoisonMessage("invalid_message", f"{where}{name} is not a uuid: {text!r}") from None


def _instant(raw: Mapping[str, Any], name: str, where: str = "") -> datetime:
    text = _field(raw, name, str, where)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise PoisonMessage("invalid_message", f"{where}{name} is not ISO 8601: {text!r}") from None
    if value.tzinfo is None:
        raise PoisonMessage("invalid_message", f"{where}{name} has no UTC offset: {text!r}")
    return value.astimezone(UTC)


def _charge(raw: Any, where: str) -> ChargeUsage:
    if not isinstance(raw, dict):
        raise PoisonMessage("invalid_message", f"{where} must be an object")
    units_text = _field(raw, "units", str, where)
    try:
        units = as_decimal(units_text)
    except ValueError:
        raise PoisonMessage("invalid_message", f"{where}units is not a finite decimal") from None
    events_count = _field(raw, "events_count", int, where)
    aggregation = raw.get("aggregation") or {}
    if not isinstance(aggregation, dict):
        raise PoisonMessage("invalid_message", f"{where}aggregation must be an object")
    return ChargeUsage(
        charge_id=_uuid(raw, "charge_id", where),
        charge_model=_field(raw, "charge_model", str, where),
        billable_metric_id=_uuid(raw, "billable_metric_id", where),
        billable_metric_code=_field(raw, "billable_metric_code", str, where),
        aggregation_type=_field(raw, "aggregation_type", str, where),
        units=units,
        events_count=events_count,
        aggregation=aggregation,
    )


def _charges(raw: Mapping[str, Any], where: str) -> tuple[ChargeUsage, ...]:
    items = _field(raw, "charges", list, where)
    return tuple(_charge(item, f"{where}charges.{i}.") for i, item in enumerate(items))


def _object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise PoisonMessage("invalid_message", "empty value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage("invalid_json", str(exc)) from None
    if not isinstance(raw, dict):
        raise PoisonMessage("invalid_message", "the value must be a JSON object")
    return raw


def _period(raw: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start, end = _instant(raw, "period_start"), _instant(raw, "period_end")
    if not start < end:
        raise PoisonMessage("invalid_message", "period_end must be after period_start")
    return start, end


def charges_from_json(items: Any) -> tuple[ChargeUsage, ...]:
    """Charges stored as the message carried them (the invoicer's `late_usage` rows)."""
    return _charges({"charges": items}, "")


def charge_json(usage: ChargeUsage) -> dict[str, Any]:
    """A charge as the message carries it."""
    return {
        "charge_id": usage.charge_id,
        "charge_model": usage.charge_model,
        "billable_metric_id": usage.billable_metric_id,
        "billable_metric_code": usage.billable_metric_code,
        "aggregation_type": usage.aggregation_type,
        "units": str(usage.units),
        "events_count": usage.events_count,
        "aggregation": dict(usage.aggregation),
    }


# Integers orjson reads as int too (beyond -2**63..2**64-1 it gives a float, which the
# checks refuse); the few above 2**63 - 1 are left to the checked path.
_JSON_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_NULL = msgspec.Raw(b"null")


class _ChargeWire(msgspec.Struct):
    """A charge of a period_closed message as the fast path decodes it; its aggregation
    state is left raw, for orjson to read as the checked path does (same numbers)."""

    charge_id: str
    charge_model: str
    billable_metric_id: str
    billable_metric_code: str
    aggregation_type: str
    units: str
    events_count: _JSON_INT
    aggregation: msgspec.Raw = _NULL


class _PeriodClosedWire(msgspec.Struct):
    """A period_closed message as the fast path decodes it. A field the checked path reads
    loosely (`str(... or "")`, truthiness) is typed as its usual JSON type: any other one
    leaves the message to the checked path."""

    period_key: str
    organization_id: str
    subscription_id: str
    external_subscription_id: str
    currency: str
    period_start: str
    period_end: str
    charges: list[_ChargeWire]
    type: str = "period_closed"
    external_customer_id: str | None = None
    plan_code: str | None = None
    terminated: bool | None = None
    adjustments: list[Any] | None = None
    closed_at: str | None = None


_WIRE = msgspec.json.Decoder(_PeriodClosedWire)


class _Refused(Exception):
    """The fast path cannot take the message: the checked path reads it (and says why)."""


def _fast_uuid(text: str) -> str:
    if not _CANONICAL_UUID.fullmatch(text):
        raise _Refused
    return text


@lru_cache(maxsize=4096)  # a round's periods mostly share their bounds
def _fast_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused from None
    if value.tzinfo is None:
        raise _Refused
    return value.astimezone(UTC)


def _fast_charge(wire: _ChargeWire) -> ChargeUsage:
    aggregation = orjson.loads(memoryview(wire.aggregation)) or {}
    if not isinstance(aggregation, dict):
        raise _Refused
    try:
        units = as_decimal(wire.units)
    except ValueError:
        raise _Refused from None
    return ChargeUsage(  # by position, each field named (billing.value)
        _fast_uuid(wire.charge_id),  # charge_id
        wire.charge_model,  # charge_model
        _fast_uuid(wire.billable_metric_id),  # billable_metric_id
        wire.billable_metric_code,  # billable_metric_code
        wire.aggregation_type,  # aggregation_type
        units,  # units
        wire.events_count,  # events_count
        aggregation,  # aggregation
    )


def _fast_period_closed(value: bytes) -> PeriodClosed:
    """The common message (a period_closed without adjustments, every field well formed) in
    one C decoding pass; _Refused for anything else. It accepts exactly what the checked
    path accepts and builds the same PeriodClosed."""
    try:
        wire = _WIRE.decode(value)
    except msgspec.DecodeError:
        raise _Refused from None
    if wire.type != "period_closed" or wire.adjustments:
        raise _Refused
    start, end = _fast_instant(wire.period_start), _fast_instant(wire.period_end)
    if not start < end:
        raise _Refused
    return PeriodClosed(  # by position, each field named (billing.value)
        wire.period_key,  # period_key
        _fast_uuid(wire.organization_id),  # organization_id
        _fast_uuid(wire.subscription_id),  # subscription_id
        wire.external_subscription_id,  # external_subscription_id
        str(wire.external_customer_id or ""),  # external_customer_id
        str(wire.plan_code or ""),  # plan_code
        wire.currency,  # currency
        start,  # period_start
        end,  # period_end
        bool(wire.terminated),  # terminated
        tuple(_fast_charge(c) for c in wire.charges),  # charges
        (),  # adjustments
        None if wire.closed_at is None else _fast_instant(wire.closed_at),  # closed_at
    )


def parse_message(value: bytes | None) -> PeriodClosed | LateUsage:
    """A periods-closed message by its `type`; raises PoisonMessage when it is neither."""
    if value is not None:
        try:
            return _fast_period_closed(value)
        except _Refused:
            pass  # late usage, adjustments or a refusal: the checked path below
    raw = _object(value)
    kind = raw.get("type", "period_closed")
    if kind == "period_closed":
        return _period_closed(raw)
    if kind == "late_usage":
        return _late_usage(raw)
    raise PoisonMessage("invalid_message", f"unknown message type {kind!r}")


def parse_period_closed(value: bytes | None) -> PeriodClosed:
    """The message as a PeriodClosed; raises PoisonMessage when it can never be one."""
    return _period_closed(_object(value))


def _late_usage(raw: Mapping[str, Any]) -> LateUsage:
    start, end = _period(raw)
    return LateUsage(
        late_key=_field(raw, "late_key", str),
        period_key=_field(raw, "period_key", str),
        organization_id=_uuid(raw, "organization_id"),
        subscription_id=_uuid(raw, "subscription_id"),
        external_subscription_id=_field(raw, "external_subscription_id", str),
        currency=_field(raw, "currency", str),
        period_start=start,
        period_end=end,
        charges=_charges(raw, ""),
    )


def _period_closed(raw: Mapping[str, Any]) -> PeriodClosed:
    start, end = _period(raw)
    adjustments = []
    for i, item in enumerate(raw.get("adjustments") or []):
        where = f"adjustments.{i}."
        if not isinstance(item, dict):
            raise PoisonMessage("invalid_message", f"{where} must be an object")
        adjustments.append(
            Adjustment(
                period_start=_instant(item, "period_start", where),
                period_end=_instant(item, "period_end", where),
                charges=_charges(item, where),
            )
        )
    closed_at = raw.get("closed_at")
    return PeriodClosed(
        period_key=_field(raw, "period_key", str),
        organization_id=_uuid(raw, "organization_id"),
        subscription_id=_uuid(raw, "subscription_id"),
        external_subscription_id=_field(raw, "external_subscription_id", str),
        external_customer_id=str(raw.get("external_customer_id") or ""),
        plan_code=str(raw.get("plan_code") or ""),
        currency=_field(raw, "currency", str),
        period_start=start,
        period_end=end,
        terminated=bool(raw.get("terminated")),
        charges=_charges(raw, ""),
        adjustments=tuple(adjustments),
        closed_at=_instant(raw, "closed_at") if isinstance(closed_at, str) else None,
    )
