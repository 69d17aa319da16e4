"""The alert monitor, run by the webhooks service beside delivery: every
METERFLOW_ALERTS_INTERVAL seconds it asks the aggregator for the current usage of each
subscription with live alerts, and for each alert records the thresholds crossed since its
`previous_value` (`triggered_alerts`) and queues `alert.triggered`, in the transaction that
moves `previous_value` on. A crossing is therefore announced once, whatever crashes: a
monitor killed before its commit checks the same crossing again; one after it finds the new
`previous_value`. Several monitors share the work (alerts are locked, and skipped while
locked)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import orjson

from billing.alert_thresholds import Threshold, crossed, json_number, threshold, watched_value
from meterflow import webhook_outbox
from meterflow.aggregator_usage import Unreachable, UsageClient
from meterflow.db import Conn
from store import lifetime_usage
from web.payload import iso
from webhooks.metrics import WebhookMetrics

log = logging.getLogger(__name__)

BATCH = 200

# Subscriptions with a live alert not checked for `$1` seconds.
_DUE = """
SELECT DISTINCT a.subscription_id, a.organization_id, s.external_id,
    c.external_id AS external_customer_id
FROM alerts a JOIN subscriptions s ON s.id = a.subscription_id
JOIN customers c ON c.id = s.customer_id
WHERE a.deleted_at IS NULL AND s.status = 'active'
    AND (a.last_processed_at IS NULL OR a.last_processed_at <= now() - make_interval(secs => $1))
LIMIT $2
"""

# The subscription's alerts not checked since `$2` (when its usage was asked for), locked; an
# alert another monitor holds is skipped, it is being checked.
_LOCK = """
SELECT a.*, bm.code AS billable_metric_code FROM alerts a
LEFT JOIN billable_metrics bm ON bm.id = a.billable_metric_id
WHERE a.subscription_id = $1 AND a.deleted_at IS NULL
    AND (a.last_processed_at IS NULL OR a.last_processed_at < $2)
FOR UPDATE OF a SKIP LOCKED
"""


class AlertMonitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        usage: UsageClient,
        interval: float,
        metrics: WebhookMetrics,
    ) -> None:
        self.pool = pool
        self.http = http
        self.usage = usage
        self.interval = interval
        self.metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Check due alerts every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                await self.check_due()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("alerts.check_failed error=%r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def check_due(self) -> int:
        """Check every subscription whose alerts are due; how many alerts were triggered."""
        triggered = 0
        while True:
            async with self.pool.acquire() as conn:
                due = await conn.fetch(_DUE, self.interval * 0.9, BATCH)
            for row in due:
                triggered += await self._check(row)
            if len(due) < BATCH:
                return triggered

    async def _usage(self, subscription: asyncpg.Record) -> dict[str, Any] | None:
        """The subscription's `customer_usage` as the aggregator answers it; None (logged)
        when no worker answers for it now: it is checked again at the next round."""
        try:
            answer = await self.usage.get(
                self.http, subscription["external_id"], str(subscription["organization_id"])
            )
        except Unreachable as exc:
            log.warning("alerts.usage_unreachable error=%s", exc)
            return None
        if answer.status != 200:
            log.warning("alerts.usage_unavailable url=%s status=%s", answer.url, answer.status)
            return None
        usage: dict[str, Any] = orjson.loads(answer.body)["customer_usage"]
        return usage

    async def _check(self, subscription: asyncpg.Record) -> int:
        asked_at = datetime.now(UTC)
        usage = await self._usage(subscription)
        if usage is None:
            self.metrics.alert_checks.labels("unavailable").inc()
            return 0
        triggered = 0
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(_LOCK, subscription["subscription_id"], asked_at)
            before = Decimal(0)
            if any(a["alert_type"] == "lifetime_usage_amount" for a in locked):
                lifetime = await lifetime_usage.before_now(
                    conn, subscription["organization_id"], subscription["external_id"]
                )
                before = Decimal(lifetime["historical"] + lifetime["invoiced"])
            for alert in locked:
                current = watched_value(
                    alert["alert_type"], alert["billable_metric_code"], usage, before
                )
                previous: Decimal = alert["previous_value"]
                hits = crossed([threshold(t) for t in alert["thresholds"]], previous, current)
                if hits:
                    await _trigger(conn, subscription, alert, previous, current, hits)
                    triggered += 1
                await conn.execute(
                    "UPDATE alerts SET previous_value = $2, last_processed_at = now() "
                    "WHERE id = $1",
                    alert["id"],
                    current,
                )
                self.metrics.alert_checks.labels("checked").inc()
        self.metrics.alerts_triggered.inc(triggered)
        return triggered


async def _trigger(
    conn: Conn,
    subscription: asyncpg.Record,
    alert: asyncpg.Record,
    previous: Decimal,
    current: Decimal,
    hits: list[Threshold],
) -> None:
    """Record the crossing and queue its `alert.triggered`, in the caller's transaction."""
    triggered_id = uuid.uuid4()
    at = await conn.fetchval(
        "INSERT INTO triggered_alerts (id, organization_id, alert_id, subscription_id, "
        "previous_value, current_value, crossed_thresholds) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING triggered_at",
        triggered_id,
        alert["organization_id"],
        alert["id"],
        alert["subscription_id"],
        previous,
        current,
        [t.body() for t in hits],
    )
    body = {
        "lago_id": str(triggered_id),
        "lago_organization_id": str(alert["organization_id"]),
        "lago_alert_id": str(alert["id"]),
        "lago_subscription_id": str(alert["subscription_id"]),
        "external_subscription_id": subscription["external_id"],
        "external_customer_id": subscription["external_customer_id"],
        "billable_metric_code": alert["billable_metric_code"],
        "alert_type": alert["alert_type"],
        "alert_code": alert["code"],
        "alert_name": alert["name"],
        "current_value": json_number(current),
        "previous_value": json_number(previous),
        "triggered_at": iso(at),
        "crossed_thresholds": [t.body() for t in hits],
    }
    await webhook_outbox.emit(conn, alert["organization_id"], "alert.triggered", triggered_id, body)
    log.info(
        "alerts.triggered alert=%s subscription=%s previous=%s current=%s crossed=%s",
        alert["code"],
        subscription["external_id"],
        previous,
        current,
        ",".join(str(t.value) for t in hits),
    )
