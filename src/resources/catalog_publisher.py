"""Sends the catalog outbox to the compacted catalog topic.

Handlers write a `CatalogRecord` to `catalog_outbox` in the same transaction as the change,
and drain the outbox right after the commit; a background loop drains whatever a failed
send (Kafka down) or a crash left behind. A record may be sent twice (a drain that crashed
after the send, before the delete); readers ignore versions they have already seen.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from resources import repository
from web.context import Producer
from web.errors import BrokerUnavailable
from web.metrics import IngestMetrics

log = logging.getLogger(__name__)

_BATCH = 500


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
            async with repository.unit_of_work(self._pool) as conn:
                claimed = await repository.claim_outbox(conn, _BATCH)
                if not claimed:
                    return sent
                await self._broker.send_all(
                    self._topic, [(record.key, record.encode()) for _, record in claimed]
                )
                await repository.delete_outbox(conn, [outbox_id for outbox_id, _ in claimed])
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
