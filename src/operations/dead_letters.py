"""`meterflow dead-letters`: list the dead-letter topic with filters, show one with its
payload and reason, requeue chosen ones to the topic they came from (events go back through
the aggregator's dedupe, so a requeue never counts an event twice), and say how many are
left."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from meterflow.db import connect
from meterflow.errors import MeterflowError
from meterflow.event_records import partition_for, position, requeue_header
from meterflow.settings import Settings
from operations.kafka_reading import partitions_of, read_range, reader


class DeadLetterError(MeterflowError):
    """A dead letter named by the operator does not exist or cannot be requeued."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, decoded."""

    partition: int
    offset: int
    key: bytes | None
    body: dict[str, Any]
    requeued: int  # times requeued so far

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def service(self) -> str:
        return str((self.body.get("source") or {}).get("service") or "aggregator")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason"))

    @property
    def at(self) -> datetime | None:
        raw = self.body.get("dead_lettered_at")
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None

    @property
    def payload_bytes(self) -> bytes:
        text, encoded = self.body.get("payload"), self.body.get("payload_base64")
        if isinstance(text, str):
            return text.encode()
        return base64.b64decode(encoded) if isinstance(encoded, str) else b""

    @property
    def event(self) -> dict[str, Any] | None:
        """The payload as a JSON object (an event, or a periods-closed message)."""
        try:
            decoded = orjson.loads(self.payload_bytes)
        except orjson.JSONDecodeError:
            return None
        return decoded if isinstance(decoded, dict) else None

    def source_position(self) -> tuple[int, int]:
        """(partition, position) of the dead-lettered event in the events topic."""
        source = self.body.get("source") or {}
        offset, index = int(source.get("offset") or 0), int(source.get("index") or 0)
        return int(source.get("partition") or 0), position(offset, index)

    def field_of_event(self, name: str) -> str | None:
        event = self.event or {}
        value = event.get(name)
        return value if isinstance(value, str) else None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dead_lettered_at": self.body.get("dead_lettered_at"),
            "service": self.service,
            "reason": self.reason,
            "field": self.body.get("field"),
            "detail": self.body.get("detail"),
            "organization_id": self.field_of_event("organization_id"),
            "external_subscription_id": self.field_of_event("external_subscription_id"),
            "transaction_id": self.field_of_event("transaction_id"),
            "requeued": self.requeued,
        }


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    reason: str | None = None
    service: str | None = None
    organization_id: str | None = None
    external_subscription_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def accepts(self, letter: DeadLetter) -> bool:
        at = letter.at
        return (
            self.reason in (None, letter.reason)
            and self.service in (None, letter.service)
            and self.organization_id in (None, letter.field_of_event("organization_id"))
            and self.external_subscription_id
            in (None, letter.field_of_event("external_subscription_id"))
            and (self.since is None or (at is not None and at >= self.since))
            and (self.until is None or (at is not None and at < self.until))
        )


async def _requeued(conn: asyncpg.Connection, topic: str) -> dict[tuple[int, int], int]:
    rows = await conn.fetch(
        'SELECT "partition", "offset", times FROM dead_letter_requeues WHERE topic = $1', topic
    )
    return {(r["partition"], r["offset"]): r["times"] for r in rows}


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every record of the dead-letter topic, with how often each was requeued."""
    topic = settings.topics.dead_letter
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        requeued = await _requeued(conn, topic)
    finally:
        await conn.close()
    letters = []
    async with reader(settings.bootstrap_servers) as consumer:
        tps = await partitions_of(consumer, topic)
        start = await consumer.beginning_offsets(tps) if tps else {}
        end = await consumer.end_offsets(tps) if tps else {}
        async for record in read_range(consumer, start, end):
            try:
                body = orjson.loads(record.value or b"")
            except orjson.JSONDecodeError:
                body = {"reason": "unreadable_dead_letter", "payload": None}
            if not isinstance(body, dict):
                body = {"reason": "unreadable_dead_letter", "payload": None}
            done = requeued.get((record.partition, record.offset), 0)
            letters.append(DeadLetter(record.partition, record.offset, record.key, body, done))
    return letters


def find(letters: list[DeadLetter], ident: str) -> DeadLetter:
    partition, _, offset = ident.rpartition(":")
    for letter in letters:
        if letter.offset == int(offset) and letter.partition == int(partition or 0):
            return letter
    raise DeadLetterError(
        f"no dead letter {ident!r} in the dead-letter topic; `meterflow dead-letters list` "
        "shows their ids (partition:offset)"
    )


@dataclass(frozen=True, slots=True)
class Requeue:
    requeued: list[str]
    skipped: list[str]  # already requeued, not asked again


async def requeue(settings: Settings, letters: list[DeadLetter], *, again: bool) -> Requeue:
    """Send each dead letter's payload back to its source topic (events: keyed and
    partitioned as ingest writes them) and record it; those requeued before are skipped
    unless `again`."""
    todo = [letter for letter in letters if again or not letter.requeued]
    skipped = [letter.id for letter in letters if letter not in todo]
    for letter in todo:
        if letter.service == "aggregator" and letter.field_of_event("organization_id") is None:
            raise DeadLetterError(
                f"dead letter {letter.id} ({letter.reason}) carries no event to requeue: its "
                "payload is not a JSON event; it stays in the topic for the record"
            )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        for letter in todo:
            if letter.service == "aggregator":
                key = str(letter.field_of_event("external_subscription_id") or "").encode()
                topic = settings.topics.events
                partition = partition_for(key, settings.partitions)
            else:
                key = letter.key or b""
                topic = str(letter.body["source"]["topic"])
                partition = int(letter.body["source"]["partition"])
            headers = []
            if letter.service == "aggregator":
                headers.append(requeue_header(*letter.source_position()))
            await producer.send_and_wait(
                topic, letter.payload_bytes, key=key, partition=partition, headers=headers
            )
            await conn.execute(
                """INSERT INTO dead_letter_requeues (topic, "partition", "offset")
                   VALUES ($1, $2, $3) ON CONFLICT (topic, "partition", "offset")
                   DO UPDATE SET times = dead_letter_requeues.times + 1, requeued_at = now()""",
                settings.topics.dead_letter,
                letter.partition,
                letter.offset,
            )
    finally:
        await conn.close()
        await producer.stop()
    return Requeue([letter.id for letter in todo], skipped)
