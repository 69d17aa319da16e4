"""A batch of events in one msgspec pass: the body decoded and validated in C, then each event's
Kafka record and Lago's answer built with as little Python as makes them certain.

`accept_batch` takes the common batch (every event well-formed: ids, a numeric or string
timestamp, flat properties of scalars, no precise amount) and declines (None) anything else,
valid or not: `ingest.events` then reads that body the general way, event by event, which
accepts the same events as the same records and answers and words every refusal in Lago's
shape (a generative unit test holds the two paths to it). The events are
`meterflow.event_records.WireEvent`s, the one wire schema, which the broker encodes a
partition's pack at a time (`Broker.send_events`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from billing.errors import InvalidEvent
from ingest.stamps import micros_of_instant, stamp_of, stamp_of_micros
from meterflow.event_records import WireEvent

_Id = Annotated[str, msgspec.Meta(min_length=1)]  # not blank either: checked per event
# Integers of int64 (msgspec bounds no wider); orjson, the general path's reader, reads
# uint64 too and anything larger as a float: those take the general path.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Finite = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
_Scalar = str | _Int | _Finite | bool | None


class EventInput(msgspec.Struct, forbid_unknown_fields=True):
    """One event of `POST /api/v1/events/batch` in the common form."""

    transaction_id: _Id
    external_subscription_id: _Id
    code: _Id
    timestamp: _Int | _Finite | str | None = None
    properties: dict[str, _Scalar] | None = None
    external_customer_id: str | None = None
    precise_total_amount_cents: None = None  # an amount takes the general path


class BatchInput(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventInput]


class EventAnswer(msgspec.Struct):
    """An accepted event as Lago answers it: the ids Lago assigns while processing are null,
    since processing happens downstream, after the answer (`ingest.events.event_body`).
    Built positionally (no defaults: a keyword call costs more), nulls included."""

    lago_id: None
    transaction_id: str
    lago_customer_id: None
    lago_subscription_id: None
    external_subscription_id: str
    code: str
    timestamp: str
    precise_total_amount_cents: None
    properties: dict[str, _Scalar]
    created_at: str


class BatchAnswer(msgspec.Struct):
    events: list[EventAnswer]


_DECODER = msgspec.json.Decoder(BatchInput)
_ENCODER = msgspec.json.Encoder()


def accept_batch(
    body: bytes, organization_id: str, received_at: datetime, max_batch: int
) -> tuple[list[WireEvent], bytes] | None:
    """The events of a common batch of 1 to `max_batch` events received at `received_at`,
    in their order, and Lago's answer body; None when the body is anything else (see the
    module docstring)."""
    try:
        events = _DECODER.decode(body).events
    except msgspec.DecodeError:  # ValidationError included
        return None
    if not 0 < len(events) <= max_batch:
        return None
    # The time of receipt from the same digits as any epoch timestamp, and Lago's
    # created_at (seconds) from its wire stamp's ISO form.
    received = stamp_of_micros(micros_of_instant(received_at))
    if received is None:
        return None
    created_at = received[1][:19] + "Z"
    wires: list[WireEvent] = []
    answers: list[EventAnswer] = []
    for event in events:
        transaction_id = event.transaction_id
        subscription_id = event.external_subscription_id
        code = event.code
        if transaction_id.isspace() or subscription_id.isspace() or code.isspace():
            return None
        timestamp = event.timestamp
        if timestamp is None:
            stamp = received
        else:
            try:
                stamp = stamp_of(timestamp)
            except InvalidEvent:
                return None
        properties = event.properties
        if properties is None:
            properties = {}
        wires.append(
            WireEvent(
                organization_id,
                transaction_id,
                subscription_id,
                code,
                stamp[0],
                properties,
                event.external_customer_id,
            )
        )
        answers.append(
            EventAnswer(
                None,
                transaction_id,
                None,
                None,
                subscription_id,
                code,
                stamp[1],
                None,
                properties,
                created_at,
            )
        )
    return wires, _ENCODER.encode(BatchAnswer(answers))
