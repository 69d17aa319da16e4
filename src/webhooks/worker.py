"""The delivery worker: claims due webhooks under a lease, signs and POSTs them, records
every attempt, and retries failures with exponential back-off.

Delivery is at least once: a webhook is claimed (its lease committed) before it is sent, and
marked delivered after the receiver's 2xx; a worker killed in between leaves the lease to
expire and the webhook is sent again with the same X-Lago-Unique-Key, which receivers use to
drop the repeat. Many requests are in flight at once, each with its own timeout, so a slow or
dead endpoint delays only its own webhooks; invoicing never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import orjson

from meterflow import db
from meterflow import webhook_outbox as outbox
from meterflow.aggregator_usage import UsageClient
from meterflow.settings import Settings
from webhooks.alert_monitor import AlertMonitor
from webhooks.metrics import WebhookMetrics
from webhooks.render import render
from webhooks.settings import WebhookSettings
from webhooks.signing import signing_keys

log = logging.getLogger(__name__)

# Claiming increments `attempts` and pushes next_attempt_at past the request's timeout: a
# worker that dies mid-request leaves the webhook due again once that lease ends. Each
# endpoint gets at most $3 requests in flight, less those this worker already has for it
# ($4 endpoints, $5 counts), so a slow endpoint cannot take every slot. The UPDATE checks
# the row is still due: of two workers choosing the same row, the second finds it leased.
_CLAIM = """
WITH due AS (
    SELECT id, webhook_endpoint_id,
        row_number() OVER (PARTITION BY webhook_endpoint_id ORDER BY next_attempt_at, id) AS rank
    FROM (SELECT id, webhook_endpoint_id, next_attempt_at FROM webhooks
          WHERE status = 'pending' AND next_attempt_at <= now()
          ORDER BY next_attempt_at LIMIT 1000) oldest
), chosen AS (
    SELECT due.id FROM due
    LEFT JOIN unnest($4::uuid[], $5::int[]) AS busy(endpoint_id, n)
        ON busy.endpoint_id = due.webhook_endpoint_id
    WHERE due.rank <= $3 - coalesce(busy.n, 0)
    LIMIT $1
)
UPDATE webhooks w SET attempts = w.attempts + 1, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM chosen, webhook_endpoints e
WHERE w.id = chosen.id AND e.id = w.webhook_endpoint_id
    AND w.status = 'pending' AND w.next_attempt_at <= now()
RETURNING w.id, w.organization_id, w.webhook_endpoint_id, w.webhook_type, w.object_type,
    w.object_id, w.payload, w.attempts, w.created_at, e.webhook_url, e.signature_algo
"""


class WebhookWorker:
    def __init__(
        self, settings: Settings, config: WebhookSettings, metrics: WebhookMetrics | None = None
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics or WebhookMetrics()
        self.stop = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._http: aiohttp.ClientSession | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # Requests in flight per endpoint.
        self._busy: Counter[uuid.UUID] = Counter()

    async def start(self) -> None:
        self._pool = await db.create_pool(
            self.settings.dsn,
            schema=self.settings.db_schema,
            size=self.config.db_pool_size,
            init=db.use_orjson,
            command_timeout=30,
        )
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            headers={"User-Agent": "meterflow-webhooks"},
        )
        log.info("webhooks.started schema=%s", self.settings.db_schema)

    async def close(self) -> None:
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.config.timeout + 1)
        if self._http is not None:
            await self._http.close()
        if self._pool is not None:
            await self._pool.close()
        log.info("webhooks.stopped")

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "start() opens the pool"
        return self._pool

    async def run(self) -> None:
        """Claim and send due webhooks, and check usage alerts, until `stop` is set."""
        assert self._http is not None, "start() opens the HTTP session"
        monitor = AlertMonitor(
            self.pool,
            self._http,
            UsageClient(self.config.aggregator_urls),
            self.config.alerts_interval,
            self.metrics,
        )
        alerts = asyncio.create_task(monitor.run(self.stop))
        try:
            await self._deliver_until_stopped()
        finally:
            self.stop.set()
            await alerts

    async def _deliver_until_stopped(self) -> None:
        while not self.stop.is_set():
            free = self.config.concurrency - len(self._in_flight)
            claimed = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("webhooks.claim_failed error=%r", exc)
            for row in claimed:
                endpoint = row["webhook_endpoint_id"]
                self._busy[endpoint] += 1
                task = asyncio.create_task(self._deliver(row))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                task.add_done_callback(functools.partial(self._release, endpoint))
            if len(claimed) < free:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.config.poll_interval)
            else:
                await asyncio.sleep(0)

    def _release(self, endpoint: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._busy[endpoint] -= 1
        if self._busy[endpoint] <= 0:
            del self._busy[endpoint]

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        busy = list(self._busy.items())
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    _CLAIM,
                    limit,
                    self.config.timeout + 2,
                    self.config.per_endpoint,
                    [e for e, _ in busy],
                    [n for _, n in busy],
                )
            )

    async def _payload(self, row: asyncpg.Record) -> Any:
        """The body to send: stored with the webhook, else rendered now and stored, so that
        every later try sends the same bytes."""
        if row["payload"] is not None:
            return row["payload"]
        async with self.pool.acquire() as conn, conn.transaction():
            body = await render(conn, row["object_type"], row["object_id"])
            if body is None:
                return None
            payload = outbox.payload(row["webhook_type"], row["organization_id"], body)
            return await conn.fetchval(
                "UPDATE webhooks SET payload = coalesce(payload, $2::json) WHERE id = $1 "
                "RETURNING payload",
                row["id"],
                payload,
            )

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease ends and the webhook is tried again; the worker goes on.
            log.exception("webhooks.attempt_crashed webhook_id=%s", row["id"])

    async def _attempt(self, row: asyncpg.Record) -> None:
        payload = await self._payload(row)
        started = time.time()
        if payload is None:
            await self._record(row, started, None, "object_not_found", final=True)
            return
        body = orjson.dumps(payload)
        async with self.pool.acquire() as conn:
            keys = await signing_keys(conn, row["organization_id"])
        algorithm = row["signature_algo"]
        headers = {
            "Content-Type": "application/json",
            "X-Lago-Signature": keys.sign(algorithm, body, issuer=self.config.jwt_issuer),
            "X-Lago-Signature-Algorithm": algorithm,
            "X-Lago-Unique-Key": str(row["id"]),
        }
        status: int | None = None
        error: str | None = None
        assert self._http is not None
        try:
            async with self._http.post(row["webhook_url"], data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        self.metrics.latency.observe(time.time() - started)
        if self.config.fault == "kill_after_send":
            os.kill(os.getpid(), signal.SIGKILL)
        await self._record(row, started, status, error, final=False)

    async def _record(
        self,
        row: asyncpg.Record,
        started: float,
        status: int | None,
        error: str | None,
        *,
        final: bool,
    ) -> None:
        """Write the attempt and the webhook's new state in one transaction."""
        succeeded = status is not None and 200 <= status < 300
        attempts: int = row["attempts"]
        if succeeded:
            outcome, retry_in = "succeeded", None
        elif final or attempts >= self.config.max_attempts:
            outcome, retry_in = "failed", None
        else:
            outcome, retry_in = "retrying", self.config.backoff(attempts)
        if error is None and not succeeded:
            error = f"http_status {status}"
        async with self.pool.acquire() as conn, conn.transaction():
            next_at = await conn.fetchval(
                "UPDATE webhooks SET status = $2, last_http_status = $3, last_error = $4, "
                "next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at "
                "ELSE now() + make_interval(secs => $5::float8) END, "
                "delivered_at = CASE WHEN $2 = 'succeeded' THEN now() END, updated_at = now() "
                "WHERE id = $1 RETURNING next_attempt_at",
                row["id"],
                "pending" if outcome == "retrying" else outcome,
                status,
                error,
                retry_in,
            )
            await conn.execute(
                "INSERT INTO webhook_attempts (webhook_id, attempt, started_at, duration_ms, "
                "http_status, error, outcome, next_attempt_at) "
                "VALUES ($1, $2, to_timestamp($3), $4, $5, $6, $7, $8)",
                row["id"],
                attempts,
                started,
                int((time.time() - started) * 1000),
                status,
                error,
                outcome,
                next_at if retry_in is not None else None,
            )
        self.metrics.attempts.labels(outcome).inc()
        if succeeded:
            self.metrics.commit_to_delivery.observe(time.time() - row["created_at"].timestamp())
        log.info(
            "webhook.attempt webhook_id=%s type=%s attempt=%d outcome=%s http_status=%s "
            "error=%s retry_in=%s",
            row["id"],
            row["webhook_type"],
            attempts,
            outcome,
            status,
            error if not succeeded else None,
            retry_in,
        )
