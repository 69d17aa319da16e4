"""`POST /api/v1/events` and `/api/v1/events/batch`: validate usage events and produce them
to the events topic, answering only once the broker acknowledged every one.

The Kafka record: key = external_subscription_id (UTF-8), value = JSON
``{"organization_id": <uuid>, **billing.events.event_to_wire(event)}``; external ids are
unique only within an organization, so the organization travels with each event.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from billing.errors import InvalidEvent
from billing.events import UsageEvent, event_to_wire, parse_event, parse_timestamp, wire_timestamp
from ingest.broker import Message
from ingest.context import IngestContext, context, organization
from ingest.errors import ApiError, BadRequest, ErrorDetails, ValidationFailed
from ingest.payload import INVALID, MANDATORY, UNKNOWN, iso, ok, read_json
from ingest.repository import Organization

log = logging.getLogger(__name__)

EVENT_FIELDS = frozenset(
    {
        "transaction_id",
        "external_subscription_id",
        "code",
        "timestamp",
        "precise_total_amount_cents",
        "properties",
        "external_customer_id",  # deprecated in Lago, still accepted
    }
)


def _error_code(exc: InvalidEvent) -> str:
    """Lago-style code for a domain refusal (billing words its reasons for humans)."""
    if exc.reason.endswith(" is required"):
        return MANDATORY
    return INVALID


def validate_event(raw: Any, received_at: datetime) -> UsageEvent:
    """One event input to a domain event; raises ValidationFailed (Lago's error_details)."""
    return well_formed_event(raw, received_at) or _checked_event(raw, received_at)


def well_formed_event(raw: Any, received_at: datetime) -> UsageEvent | None:
    """The common event, accepted with as few checks as make it certain; None for anything
    unusual (a missing, null or odd field, nested properties, an amount), which
    `_checked_event` then accepts or refuses, wording the error. Both accept the same events
    as the same UsageEvent (a unit test holds them to it)."""
    if type(raw) is not dict or not raw.keys() <= EVENT_FIELDS:
        return None
    transaction_id = raw.get("transaction_id")
    subscription_id = raw.get("external_subscription_id")
    code = raw.get("code")
    if (
        type(transaction_id) is not str
        or type(subscription_id) is not str
        or type(code) is not str
        or not transaction_id.strip()
        or not subscription_id.strip()
        or not code.strip()
    ):
        return None
    customer_id = raw.get("external_customer_id")
    if (customer_id is not None and type(customer_id) is not str) or raw.get(
        "precise_total_amount_cents"
    ) is not None:
        return None
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif type(properties) is not dict:
        return None
    else:
        for value in properties.values():
            kind = type(value)
            if not (kind is str or kind is int or kind is bool or value is None) and not (
                kind is float and math.isfinite(value)
            ):
                return None
    timestamp = raw.get("timestamp")
    if timestamp is None:
        instant = received_at
    else:
        try:
            instant = parse_timestamp(timestamp)
        except InvalidEvent:
            return None
    return UsageEvent(
        transaction_id=transaction_id,
        external_subscription_id=subscription_id,
        code=code,
        timestamp=instant,
        properties=properties,
        external_customer_id=customer_id,
    )


def _checked_event(raw: Any, received_at: datetime) -> UsageEvent:
    """Every check of an event, naming the first problem in Lago's error_details."""
    if not isinstance(raw, dict):
        raise ValidationFailed({"event": ["value_is_invalid"]})
    unknown = sorted(k for k in raw if k not in EVENT_FIELDS)
    if unknown:
        raise ValidationFailed({k: [UNKNOWN] for k in unknown})
    # Lago's clients send absent optional fields as null.
    present = {k: v for k, v in raw.items() if v is not None}
    try:
        return parse_event(present, received_at=received_at)
    except InvalidEvent as exc:
        log.debug("event.invalid field=%s reason=%r", exc.field, exc.reason)
        raise ValidationFailed({exc.field or "event": [_error_code(exc)]}) from None


def wire_message(org: Organization, event: UsageEvent) -> tuple[bytes, bytes]:
    """(key, value) of the event's Kafka record: see the module docstring."""
    value = orjson.dumps({"organization_id": str(org.id), **event_to_wire(event)})
    return event.external_subscription_id.encode(), value


def _instant(value: datetime) -> str:
    """Lago's event timestamp format: UTC with milliseconds."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event: UsageEvent, received_at: datetime) -> dict[str, Any]:
    """The event as Lago answers it: the ids Lago assigns while processing are null, since
    processing happens downstream, after the answer."""
    return _body(event, _instant(event.timestamp), iso(received_at))


def _body(event: UsageEvent, instant: str, created_at: str | None) -> dict[str, Any]:
    precise = event.precise_total_amount_cents
    return {
        "lago_id": None,
        "transaction_id": event.transaction_id,
        "lago_customer_id": None,
        "lago_subscription_id": None,
        "external_subscription_id": event.external_subscription_id,
        "code": event.code,
        "timestamp": instant,
        "precise_total_amount_cents": None if precise is None else str(precise),
        "properties": event.properties,
        "created_at": created_at,
    }


def accepted(
    org: Organization, batch: list[UsageEvent], received_at: datetime
) -> tuple[list[Message], list[dict[str, Any]]]:
    """The Kafka records of a batch (as `wire_message`) and its answer (as `event_body`),
    formatting each distinct timestamp once: events without one share `received_at`."""
    organization_id = str(org.id)
    created_at = iso(received_at)
    stamps: dict[datetime, tuple[str, str]] = {}
    messages: list[Message] = []
    bodies: list[dict[str, Any]] = []
    for event in batch:
        stamp = stamps.get(event.timestamp)
        if stamp is None:
            stamp = stamps[event.timestamp] = (
                wire_timestamp(event.timestamp),
                _instant(event.timestamp),
            )
        wire: dict[str, object] = {
            "organization_id": organization_id,
            "transaction_id": event.transaction_id,
            "external_subscription_id": event.external_subscription_id,
            "code": event.code,
            "timestamp": stamp[0],
            "properties": event.properties,
        }
        if event.external_customer_id is not None or event.precise_total_amount_cents is not None:
            wire = {"organization_id": organization_id, **event_to_wire(event)}
        messages.append((event.external_subscription_id.encode(), orjson.dumps(wire)))
        bodies.append(_body(event, stamp[1], created_at))
    return messages, bodies


async def _produce(ctx: IngestContext, messages: list[Message]) -> None:
    try:
        await ctx.broker.send_all(ctx.settings.topics.events, messages)
    except ApiError as exc:
        ctx.metrics.events_rejected.labels(exc.code).inc(len(messages))
        raise
    ctx.metrics.events_accepted.inc(len(messages))


def _rejected(ctx: IngestContext, exc: ApiError, count: int = 1) -> ApiError:
    reasons = [
        code
        for codes in exc.error_details.values()
        for code in (codes if isinstance(codes, list) else [exc.code])
    ]
    ctx.metrics.events_rejected.labels(reasons[0] if reasons else exc.code).inc(count)
    return exc


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    received_at = datetime.now(UTC)
    try:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise BadRequest({"event": [MANDATORY]})
        extra = sorted(k for k in body if k != "event")
        if extra:
            raise ValidationFailed({k: [UNKNOWN] for k in extra})
        event = validate_event(body["event"], received_at)
    except ApiError as exc:
        raise _rejected(ctx, exc) from None
    messages, bodies = accepted(org, [event], received_at)
    await _produce(ctx, messages)
    log.debug(
        "event.accepted organization_id=%s external_subscription_id=%s transaction_id=%s",
        org.id,
        event.external_subscription_id,
        event.transaction_id,
    )
    return ok({"event": bodies[0]})


async def create_batch(request: web.Request) -> web.Response:
    """All or nothing: every event is validated before any is produced."""
    ctx, org = context(request), organization(request)
    received_at = datetime.now(UTC)
    try:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise BadRequest({"events": [MANDATORY]})
        extra = sorted(k for k in body if k != "events")
        if extra:
            raise ValidationFailed({k: [UNKNOWN] for k in extra})
        raw_events: list[Any] = body["events"]
        if not raw_events:
            raise ValidationFailed({"events": [MANDATORY]})
        if len(raw_events) > ctx.ingest.max_batch:
            raise ValidationFailed({"events": ["too_many_events"]})
    except ApiError as exc:
        raise _rejected(ctx, exc) from None
    ctx.metrics.batch_size.observe(len(raw_events))
    parsed: list[UsageEvent] = []
    errors: ErrorDetails = {}
    for i, raw in enumerate(raw_events):
        try:
            parsed.append(validate_event(raw, received_at))
        except ValidationFailed as exc:
            errors[str(i)] = exc.error_details
    if errors:
        for details in errors.values():
            ctx.metrics.events_rejected.labels(next(iter(details.values()))[0]).inc()
        # The valid events of a refused batch are refused too: nothing was produced.
        ctx.metrics.events_rejected.labels("batch_refused").inc(len(parsed))
        raise ValidationFailed(errors)
    messages, bodies = accepted(org, parsed, received_at)
    await _produce(ctx, messages)
    return ok({"events": bodies})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/events", create),
        web.post("/api/v1/events/batch", create_batch),
    ]
