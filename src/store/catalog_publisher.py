"""Sends the catalog outbox to the compacted catalog topic.

Handlers write a `CatalogRecord` to `catalog_outbox` in the same transaction as the change,
and drain the outbox right after the commit; a background loop drains whatever a failed
send (Kafka down) or a crash left behind. A record may be sent twice (a drain that crashed
after the send, before the delete); readers ignore versions they have already seen.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg

from meterflow import db
from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.db import Conn
from web.context import Producer
from web.errors import BrokerUnavailable
from web.metrics import IngestMetrics

log = logging.getLogger(__name__)

_BATCH = 500
# The advisory lock one drain at a time holds, of all the ingest processes (one per core by
# default) of a deployment (its schema): so the records of an object reach Kafka in the order
# they were written, and the compacted topic keeps the latest version, not whichever drain
# sent last.
_DRAIN_LOCK = 0x6D66_6361  # "mfca", with the schema's hash


class CatalogPublisher:
    def __init__(self, pool: asyncpg.Pool, broker: Producer, topic: str, metrics: IngestMetrics):
        self._pool = pool
        self._broker = broker
        self._topic = topic
        self._metrics = metrics

    async def drain(self) -> int:
        """Send every pending record, oldest first; returns how many were sent.

        Raises BrokerUnavailable when Kafka does not acknowledge; the records stay pending.
        """
        sent = 0
        while True:
            async with db.unit_of_work(self._pool) as conn:
                claimed = await claim_outbox(conn, _BATCH)
                if not claimed:
                    return sent
                await self._broker.send_records(
                    self._topic,
                    [(record.key, record.encode(), record.headers) for _, record in claimed],
                )
                await delete_outbox(conn, [outbox_id for outbox_id, _ in claimed])
            sent += len(claimed)
            self._metrics.catalog_published.inc(len(claimed))

    async def drain_quietly(self) -> None:
        """Drain after a commit: a Kafka outage must not fail (nor slow) a request already
        committed, so while Kafka is known down the background loop alone retries."""
        if not self._broker.healthy:
            return
        try:
            await self.drain()
        except BrokerUnavailable:
            log.warning("catalog.publish_deferred topic=%s", self._topic)

    async def run(self, interval: float) -> None:
        """Drain every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.drain()
            except BrokerUnavailable:
                log.warning("catalog.publish_deferred topic=%s", self._topic)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("catalog.publish_failed topic=%s error=%r", self._topic, exc)


async def enqueue(conn: Conn, record: CatalogRecord) -> None:
    await conn.execute(
        "INSERT INTO catalog_outbox (kind, lago_id, organization_id, version, body) "
        "VALUES ($1, $2, $3, $4, $5)",
        record.kind.value,
        uuid.UUID(record.lago_id),
        uuid.UUID(record.organization_id),
        record.version,
        record.body,
    )


async def claim_outbox(conn: Conn, limit: int) -> list[tuple[int, CatalogRecord]]:
    """The oldest unsent records, once no other drain (of any process) is sending: a
    concurrent drain waits for this transaction, and then finds these records deleted."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", _DRAIN_LOCK)
    rows = await conn.fetch(
        "SELECT id, kind, lago_id, organization_id, version, body FROM catalog_outbox "
        "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        (
            r["id"],
            CatalogRecord(
                kind=CatalogKind(r["kind"]),
                lago_id=str(r["lago_id"]),
                organization_id=str(r["organization_id"]),
                version=r["version"],
                body=r["body"],
            ),
        )
        for r in rows
    ]


async def delete_outbox(conn: Conn, ids: list[int]) -> None:
    await conn.execute("DELETE FROM catalog_outbox WHERE id = ANY($1::bigint[])", ids)
