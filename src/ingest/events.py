"""`POST /api/v1/events` and `/api/v1/events/batch`: validate usage events and produce them
to the events topic, answering only once the broker acknowledged every one.

An event on Kafka: JSON ``{"organization_id": <uuid>, **billing.events.event_to_wire(event)}``
(external ids are unique only within an organization, so the organization travels with each
event), on the partition its external_subscription_id hashes to. A request's events of one
partition travel as one record, a pack (`meterflow.event_records`); a lone event is a
record of its own, keyed by external_subscription_id (UTF-8).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from billing.errors import InvalidEvent
from billing.events import (
    UsageEvent,
    event_to_wire,
    flat_properties,
    parse_event,
    parse_timestamp,
    wire_timestamp,
)
from ingest.broker import Message
from meterflow.event_records import WireEvent, encode_event
from web.context import IngestContext, Organization, context, organization
from web.errors import ApiError, BadRequest, ErrorDetails, ValidationFailed
from web.payload import INVALID, MANDATORY, UNKNOWN, iso, ok, read_json

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
    """One event input to a domain event; raises ValidationFailed (Lago's error_details).

    Every check, naming the first problem: `Accepted.add_well_formed` is the fast path."""
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


class Accepted:
    """The Kafka records (as `wire_message`) and Lago's answer (as `event_body`) of one
    request's accepted events, built as each is accepted; each distinct timestamp is
    formatted once (events without one share `received_at`).

    `add_well_formed` takes the common event straight from its JSON with as few checks as make
    it certain, and declines (False) anything unusual (a missing, null or odd field, nested
    properties, an amount): `validate_event` then accepts or refuses it, wording the error,
    and `add` takes the event. Both paths accept the same events as the same records and
    answers (unit tests, one of them generative, hold them to it).
    """

    def __init__(self, org: Organization, received_at: datetime):
        self.organization_id = str(org.id)
        self.received_at = received_at
        self.created_at = iso(received_at)
        self.messages: list[Message] = []
        self.bodies: list[dict[str, Any]] = []
        self._received = (wire_timestamp(received_at), _instant(received_at))
        self._stamps: dict[object, tuple[str, str]] = {}

    def _stamp(self, instant: datetime) -> tuple[str, str]:
        stamp = self._stamps.get(instant)
        if stamp is None:
            stamp = self._stamps[instant] = (wire_timestamp(instant), _instant(instant))
        return stamp

    def add(self, event: UsageEvent) -> None:
        stamp = self._stamp(event.timestamp)
        if (
            event.precise_total_amount_cents is None
            and flat_properties(event.properties) is not None
        ):
            value = encode_event(
                WireEvent(
                    self.organization_id,
                    event.transaction_id,
                    event.external_subscription_id,
                    event.code,
                    stamp[0],
                    event.properties,  # type: ignore[arg-type]  # flat: checked above
                    event.external_customer_id,
                )
            )
        else:
            wire = {"organization_id": self.organization_id, **event_to_wire(event)}
            value = orjson.dumps(wire)
        self.messages.append((event.external_subscription_id.encode(), value))
        self.bodies.append(_body(event, stamp[1], self.created_at))

    def add_well_formed(self, raw: Any) -> bool:
        if type(raw) is not dict or not raw.keys() <= EVENT_FIELDS:
            return False
        get = raw.get
        transaction_id = get("transaction_id")
        subscription_id = get("external_subscription_id")
        code = get("code")
        customer_id = get("external_customer_id")
        if (
            type(transaction_id) is not str
            or type(subscription_id) is not str
            or type(code) is not str
            or not transaction_id.strip()
            or not subscription_id.strip()
            or not code.strip()
            or (customer_id is not None and type(customer_id) is not str)
            or get("precise_total_amount_cents") is not None
        ):
            return False
        properties = flat_properties(get("properties"))
        if properties is None:
            return False
        timestamp = get("timestamp")
        stamp: tuple[str, str] | None
        if timestamp is None:
            stamp = self._received
        else:
            kind = type(timestamp)
            if kind is not int and kind is not float and kind is not str:
                return False
            # Keyed by type too: True == 1 as a key, but a boolean is no timestamp.
            stamp = self._stamps.get((kind, timestamp))
            if stamp is None:
                try:
                    stamp = self._stamp(parse_timestamp(timestamp))
                except InvalidEvent:
                    return False
                self._stamps[(kind, timestamp)] = stamp
        wire = WireEvent(
            self.organization_id,
            transaction_id,
            subscription_id,
            code,
            stamp[0],
            properties,  # type: ignore[arg-type]  # flat_properties vetted every value
            customer_id,
        )
        self.messages.append((subscription_id.encode(), encode_event(wire)))
        self.bodies.append(
            {
                "lago_id": None,
                "transaction_id": transaction_id,
                "lago_customer_id": None,
                "lago_subscription_id": None,
                "external_subscription_id": subscription_id,
                "code": code,
                "timestamp": stamp[1],
                "precise_total_amount_cents": None,
                "properties": properties,
                "created_at": self.created_at,
            }
        )
        return True


async def _produce(ctx: IngestContext, messages: list[Message]) -> None:
    try:
        await ctx.broker.send_all(ctx.settings.topics.events, messages, pack=True)
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
    out = Accepted(org, received_at)
    out.add(event)
    await _produce(ctx, out.messages)
    log.debug(
        "event.accepted organization_id=%s external_subscription_id=%s transaction_id=%s",
        org.id,
        event.external_subscription_id,
        event.transaction_id,
    )
    return ok({"event": out.bodies[0]})


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
    out = Accepted(org, received_at)
    errors: ErrorDetails = {}
    for i, raw in enumerate(raw_events):
        if out.add_well_formed(raw):
            continue
        try:
            out.add(validate_event(raw, received_at))
        except ValidationFailed as exc:
            errors[str(i)] = exc.error_details
    if errors:
        for details in errors.values():
            ctx.metrics.events_rejected.labels(next(iter(details.values()))[0]).inc()
        # The valid events of a refused batch are refused too: nothing was produced.
        ctx.metrics.events_rejected.labels("batch_refused").inc(len(out.messages))
        raise ValidationFailed(errors)
    await _produce(ctx, out.messages)
    return ok({"events": out.bodies})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/events", create),
        web.post("/api/v1/events/batch", create_batch),
    ]
