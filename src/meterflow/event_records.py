"""The records of the events topic: what ingest writes and the aggregator reads.

A record's value is either one event (a JSON object) or a pack: a JSON array of at most
`PACK_LIMIT` events, written when one request carries several events for the same
partition. Every event is the wire form of a Lago event plus its `organization_id`. A pack
goes to the partition each of its events' keys (`external_subscription_id`) hashes to, so
a subscription's events always share one partition whichever way they were written.

Packs exist for throughput: the aggregator pays a fixed cost per Kafka record (fetch,
Faust's stream machinery, acknowledgement) that is larger than the cost of folding an
event, so a batch of 100 events spread over 4 partitions costs 4 records, not 100.

An event is identified inside its partition by its position, `offset * PACK_LIMIT + index`
(index 0 for a lone event): positions of a partition grow in the order events were
written, which is what the aggregator's replay rules compare.

The wire schema of an event (`billing.events` describes its fields) is `WireEvent` here, a
msgspec Struct: ingest encodes the events it writes with it, and the aggregator decodes and
validates a whole record (a lone event or a pack) with it in one C pass (`decode_events`).
`WireEvent` is the canonical form, what ingest writes: the six-decimal timestamp string,
`properties` present and flat (scalar values, finite numbers), no precise amount. Anything
else that `billing.events.parse_event` accepts (a producer writing to Kafka directly with an
ISO timestamp, nested properties, a precise amount) is valid too: a record that does not
decode as `WireEvent` is read event by event the general way (`decode_record`), which also
words the refusals. The module sits in `meterflow` (not `billing`, which is standard
library only; not `ingest` or `aggregator`, which each own one side of the topic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

import msgspec
import orjson
from murmurhash2 import murmurhash2

from billing.events import instant_of_wire_timestamp

PACK_LIMIT = 1024
# Not empty. Not only blanks either, but that is the reader's check (`blank_field`): a
# msgspec pattern runs Python's re for every string, six times the cost of the decode.
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_Stamp = Annotated[str, msgspec.Meta(min_length=8)]  # its form: `wire_instant`
_Finite = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One event of the events topic in canonical form (see the module docstring)."""

    organization_id: _Id
    transaction_id: _Id
    external_subscription_id: _Id
    code: _Id
    timestamp: _Stamp  # decimal Unix seconds, six decimals (`billing.events.wire_timestamp`)
    properties: dict[str, str | int | _Finite | bool | None]
    external_customer_id: str | None = None


_RECORD = msgspec.json.Decoder(WireEvent | list[WireEvent])
_ENCODER = msgspec.json.Encoder()


def encode_event(event: WireEvent) -> bytes:
    """The event's bytes on the wire (its fields in the schema's order)."""
    return _ENCODER.encode(event)


def decode_events(value: bytes) -> list[WireEvent] | None:
    """A record's events in canonical form, decoded and validated in one pass; None when
    any of them is not (read the record with `decode_record` then)."""
    try:
        decoded = _RECORD.decode(value)
    except msgspec.DecodeError:  # ValidationError included
        return None
    return decoded if isinstance(decoded, list) else [decoded]


def blank_field(event: WireEvent) -> str | None:
    """The first id field holding only blanks (which the schema refuses), else None."""
    for name in ("organization_id", "transaction_id", "external_subscription_id", "code"):
        if getattr(event, name).isspace():
            return name
    return None


@lru_cache(maxsize=65536)
def wire_instant(timestamp: str) -> datetime:
    """The UTC instant of a canonical wire timestamp (cached: a batch repeats a few);
    ValueError when it is not one (digits, a dot, six digits) or out of range."""
    return instant_of_wire_timestamp(timestamp)


# Kafka's murmur2 is the 32-bit MurmurHash2 with this seed (the Java client's and aiokafka's).
_KAFKA_SEED = 0x9747B28C


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and aiokafka
    hash keys) gives `key` among partitions 0..partitions-1. The hash is compiled: 0.15 us,
    where aiokafka's own, in pure Python, takes 2.8 us; a cache would save 0.1 us for the
    ids that repeat (ingest's) and cost 0.3 us for those that do not (a worker keeping its
    partitions' share of the catalog)."""
    return (murmurhash2(key, _KAFKA_SEED) & 0x7FFFFFFF) % partitions


def position(offset: int, index: int) -> int:
    """The event's place in its partition: greater for every later event."""
    return offset * PACK_LIMIT + index


def encode_pack(events: Sequence[bytes]) -> bytes:
    """One record value from already encoded events (a single one stays an object)."""
    if not 0 < len(events) <= PACK_LIMIT:
        raise ValueError(f"a record carries 1 to {PACK_LIMIT} events, not {len(events)}")
    if len(events) == 1:
        return events[0]
    return b"[" + b",".join(events) + b"]"


def encode_packs(events: Sequence[bytes], max_bytes: int) -> list[bytes]:
    """Record values for one partition's encoded events, in order: as few as `PACK_LIMIT`
    and `max_bytes` per record allow (an event larger than `max_bytes` alone)."""
    values: list[bytes] = []
    start, size = 0, 1
    for end, event in enumerate(events):
        if end > start and (end - start == PACK_LIMIT or size + len(event) + 1 > max_bytes):
            values.append(encode_pack(events[start:end]))
            start, size = end, 1
        size += len(event) + 1
    if start < len(events):
        values.append(encode_pack(events[start:]))
    return values


def encode_events(events: Sequence[WireEvent], max_bytes: int) -> list[tuple[bytes, int]]:
    """One partition's events, in order, as parts of packs with how many events each holds:
    usually one part, encoded in one call (a pack is the JSON array of its events); too many
    or too large for one record, each event alone (ingest's lanes pack parts as they fit,
    `ingest.broker.OpenPack`)."""
    if len(events) <= PACK_LIMIT:
        value = _ENCODER.encode(events[0] if len(events) == 1 else events)
        if len(value) <= max_bytes:
            return [(value, len(events))]
    return [(_ENCODER.encode(event), 1) for event in events]


def packs(
    events: Iterable[tuple[bytes, bytes]], partitions: int, max_bytes: int = 512 * 1024
) -> list[tuple[int, bytes]]:
    """(partition, record value) for (key, encoded event) pairs, as ingest writes a request:
    each partition's events in their order, in as few records as `encode_packs` allows."""
    grouped: dict[int, list[bytes]] = {}
    for key, value in events:
        grouped.setdefault(partition_for(key, partitions), []).append(value)
    return [
        (partition, value)
        for partition, values in grouped.items()
        for value in encode_packs(values, max_bytes)
    ]


def decode_record(value: bytes) -> list[Any]:
    """The events of a record value, decoded (a lone event is a list of one).

    Raises `orjson.JSONDecodeError` when the value is not JSON; the items are returned
    as found (objects or not, and past `PACK_LIMIT` or not) for the reader to judge one
    by one.
    """
    decoded = orjson.loads(value)
    return decoded if isinstance(decoded, list) else [decoded]


# A record requeued from the dead-letter topic names, in this header, the position
# ("partition:position") its event had when it was dead-lettered. That event was never
# counted, yet its transaction id may hold a dedupe marker; the marker yields to the
# requeued copy once, and to nothing else (the copy sets a marker of its own).
REQUEUE_HEADER = "meterflow-requeue-of"


def requeue_header(partition: int, position_in_partition: int) -> tuple[str, bytes]:
    return REQUEUE_HEADER, f"{partition}:{position_in_partition}".encode()


def requeued_from(headers: Any) -> tuple[int, int] | None:
    """(partition, position) of the dead-lettered event a record re-sends, from its
    headers (a mapping or key/value pairs); None for an ordinary record."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for name, value in pairs:
        if name == REQUEUE_HEADER and isinstance(value, bytes):
            partition, _, at = value.decode().partition(":")
            if partition.isdigit() and at.isdigit():
                return int(partition), int(at)
    return None
