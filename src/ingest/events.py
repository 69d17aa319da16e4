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
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from billing.errors import InvalidEvent
from billing.events import UsageEvent, event_to_wire, flat_properties, parse_event
from ingest.batch import accept_batch
from ingest.broker import Message
from ingest.stamps import Stamp, lago_instant, stamp_of_instant
from meterflow.event_records import WireEvent, encode_event
from web.context import IngestContext, Organization, context, organization
from web.errors import ApiError, BadRequest, ErrorDetails, ValidationFailed
from web.payload import INVALID, MANDATORY, UNKNOWN, iso, ok, read_json

ROUTES = web.RouteTableDef()

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


def event_body(event: UsageEvent, received_at: datetime) -> dict[str, Any]:
    """The event as Lago answers it: the ids Lago assigns while processing are null, since
    processing happens downstream, after the answer."""
    return _body(event, lago_instant(event.timestamp), iso(received_at))


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
    request's events, validated one by one (`validate_event`): the general path, for what
    `ingest.batch.accept_batch` declines. Each distinct timestamp is formatted once."""

    def __init__(self, org: Organization, received_at: datetime):
        self.organization_id = str(org.id)
        self.received_at = received_at
        self.created_at = iso(received_at)
        self.messages: list[Message] = []
        self.bodies: list[dict[str, Any]] = []
        self._stamps: dict[datetime, Stamp] = {}

    def _stamp(self, instant: datetime) -> Stamp:
        stamp = self._stamps.get(instant)
        if stamp is None:
            stamp = self._stamps[instant] = stamp_of_instant(instant)
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


async def _produce(ctx: IngestContext, messages: list[Message]) -> None:
    await _counted(ctx, len(messages), ctx.broker.send_packed(ctx.settings.topics.events, messages))


async def _counted(ctx: IngestContext, count: int, sent: Awaitable[None]) -> None:
    """Await a send of `count` events, counting them accepted or rejected."""
    try:
        await sent
    except ApiError as exc:
        ctx.metrics.events_rejected.labels(exc.code).inc(count)
        raise
    ctx.metrics.events_accepted.inc(count)


def _rejected(ctx: IngestContext, exc: ApiError, count: int = 1) -> ApiError:
    reasons = [
        code
        for codes in exc.error_details.values()
        for code in (codes if isinstance(codes, list) else [exc.code])
    ]
    ctx.metrics.events_rejected.labels(reasons[0] if reasons else exc.code).inc(count)
    return exc


@ROUTES.post("/api/v1/events")
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


@ROUTES.post("/api/v1/events/batch")
async def create_batch(request: web.Request) -> web.Response:
    """All or nothing: every event is validated before any is produced. The common batch in
    one pass (`ingest.batch`), anything else event by event, which words the refusals."""
    ctx, org = context(request), organization(request)
    received_at = datetime.now(UTC)
    common = accept_batch(await request.read(), str(org.id), received_at, ctx.ingest.max_batch)
    if common is not None:
        wires, answer = common
        ctx.metrics.batch_size.observe(len(wires))
        await _counted(ctx, len(wires), ctx.broker.send_events(ctx.settings.topics.events, wires))
        return web.Response(body=answer, content_type="application/json")
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
