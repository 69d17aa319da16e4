"""The one Kafka producer of an ingest process: idempotent, acks from all replicas, and an
answer within a deadline so an HTTP client is never left waiting on an unreachable broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.errors import BrokerUnavailable
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

Message = tuple[bytes, bytes]  # (key, value)


class Broker:
    """Sends records and waits for the broker's acknowledgement of every one.

    The producer starts lazily and restarts after a failed start, so the API comes up (and
    serves the catalog) while Kafka is down, and event endpoints answer 503 until it is back.
    """

    def __init__(self, bootstrap: str, *, timeout: float, metrics: IngestMetrics):
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.healthy = True  # False since the last failure, until a send succeeds again

    async def start(self) -> None:
        """Try to connect now; a failure is logged, not raised (sends retry the start)."""
        with contextlib.suppress(BrokerUnavailable):
            await self._ensure_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._closed:
                raise BrokerUnavailable({"broker": ["shutting_down"]})
            if self._producer is not None:
                return self._producer
            timeout_ms = int(self._timeout * 1000)
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=timeout_ms,
                linger_ms=2,
            )
            try:
                await asyncio.wait_for(producer.start(), self._timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                self.healthy = False
                await producer.stop()
                log.warning("kafka.unavailable bootstrap=%s error=%r", self._bootstrap, exc)
                raise BrokerUnavailable({"broker": ["unavailable"]}) from exc
            log.info("kafka.producer_started bootstrap=%s", self._bootstrap)
            self._producer = producer
            return producer

    async def send_all(self, topic: str, messages: Sequence[Message]) -> None:
        """Queue every message, then wait until the broker acknowledged all of them.

        Raises BrokerUnavailable if any is not acknowledged within the timeout: the caller
        then answers 503 and the client resends (duplicates are dropped downstream).
        """
        producer = await self._ensure_producer()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                futures = [await producer.send(topic, value, key=key) for key, value in messages]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            self.healthy = False
            self._metrics.produce_failures.inc()
            log.warning(
                "kafka.produce_failed topic=%s messages=%d error=%r", topic, len(messages), exc
            )
            raise BrokerUnavailable({"broker": ["unavailable"]}) from exc
        finally:
            self._metrics.produce_latency.observe(time.perf_counter() - started)
        self.healthy = True

    async def close(self) -> None:
        """Flush what is queued and disconnect."""
        async with self._lock:
            self._closed = True
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
