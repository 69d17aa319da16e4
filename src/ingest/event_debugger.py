"""`GET /api/v1/events` and `GET /api/v1/events/{transaction_id}`: the recent events of the
organization as Lago's event debugger shows them, read back from the events topic itself.

Why the topic: the topic already holds every accepted event in order, so the hot path
(`POST /events`) writes nothing more. A per-event table would double every event's write
cost for a page few people open, and the aggregator keeps totals and dedupe markers, not
the events. The price is a window: each partition's last `WINDOW` records (a record is one
event or a pack of events of one request or of several concurrent ones) are read per
request, newest first; an older event answers 404 `event_not_found`. With
`external_subscription_id` only the one partition it hashes to is read. An event's
`lago_id` is derived from its place in the topic, stable across reads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from billing.errors import InvalidEvent
from billing.events import event_from_wire
from ingest.events import event_body
from meterflow.event_records import decode_record, partition_for, position
from web.context import IngestContext, context, organization
from web.errors import BrokerUnavailable, NotFound, ValidationFailed
from web.payload import ok, page_params, pagination_meta, parse_instant

ROUTES = web.RouteTableDef()

log = logging.getLogger(__name__)

# Records read back per partition (the debugger's window).
WINDOW = 2000
_ID_NAMESPACE = uuid.UUID("6d657465-7266-6c6f-7765-76656e747321")


async def _records(ctx: IngestContext, partitions: list[int]) -> list[Any]:
    """The last WINDOW records of each partition: (partition, offset, timestamp ms, value)."""
    topic = ctx.settings.topics.events
    consumer = AIOKafkaConsumer(
        bootstrap_servers=ctx.settings.bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=int(ctx.ingest.produce_timeout * 1000),
    )
    out: list[Any] = []
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - WINDOW))
        pending = {tp for tp in tps if ends[tp] > max(starts[tp], ends[tp] - WINDOW)}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batch.items():
                out.extend((tp.partition, m.offset, m.timestamp, m.value) for m in messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if not batch:
                log.warning("events.read_back_short topic=%s pending=%d", topic, len(pending))
                break
    except KafkaError as exc:
        raise BrokerUnavailable() from exc
    finally:
        await consumer.stop()
    return out


def _events(records: list[Any], organization_id: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(sort key, API body) of the organization's events in the records."""
    for partition, offset, timestamp, value in records:
        for index, wire in enumerate(decode_record(value)):
            if not isinstance(wire, dict) or wire.pop("organization_id", None) != organization_id:
                continue
            try:
                event = event_from_wire(wire)
            except InvalidEvent:
                continue
            body = event_body(event, datetime.fromtimestamp(timestamp / 1000, UTC))
            body["lago_id"] = str(
                uuid.uuid5(_ID_NAMESPACE, f"{partition}:{position(offset, index)}")
            )
            yield timestamp * 10_000 + index, body


async def _recent(
    request: web.Request, external_subscription_id: str | None
) -> list[dict[str, Any]]:
    ctx, org = context(request), organization(request)
    count = ctx.settings.partitions
    partitions = (
        [partition_for(external_subscription_id.encode(), count)]
        if external_subscription_id
        else list(range(count))
    )
    found = list(_events(await _records(ctx, partitions), str(org.id)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [body for _, body in found]


def _bound(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    instant = parse_instant(raw)
    if instant is None:
        raise ValidationFailed({name: ["invalid_date"]})
    return instant


def _matches(event: dict[str, Any], code: str | None, low: Any, high: Any) -> bool:
    instant = parse_instant(event["timestamp"])
    assert instant is not None
    return (
        (code is None or event["code"] == code)
        and (low is None or instant >= low)
        and (high is None or instant <= high)
    )


@ROUTES.get("/api/v1/events")
async def find_all(request: web.Request) -> web.Response:
    """Filters: external_subscription_id, code, timestamp_from, timestamp_to."""
    page, per_page = page_params(request)
    subscription = request.query.get("external_subscription_id") or None
    low, high = _bound(request, "timestamp_from"), _bound(request, "timestamp_to")
    code = request.query.get("code") or None
    events = [
        e
        for e in await _recent(request, subscription)
        if (subscription is None or e["external_subscription_id"] == subscription)
        and _matches(e, code, low, high)
    ]
    start = (page - 1) * per_page
    return ok(
        {
            "events": events[start : start + per_page],
            "meta": pagination_meta(page, per_page, len(events)),
        }
    )


@ROUTES.get("/api/v1/events/{transaction_id}")
async def find(request: web.Request) -> web.Response:
    """The latest event with this transaction_id (of `external_subscription_id` if given)."""
    transaction_id = request.match_info["transaction_id"]
    subscription = request.query.get("external_subscription_id") or None
    for event in await _recent(request, subscription):
        if event["transaction_id"] == transaction_id and (
            subscription is None or event["external_subscription_id"] == subscription
        ):
            return ok({"event": event})
    raise NotFound("event")
