"""A slow endpoint holds up only its own webhooks (and at most `per_endpoint` of the
worker's request slots), and a dead one is retried with exponential back-off, each attempt
recorded, until it is given up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from lago_python_client.models import Customer, WebhookEndpoint

from integration.webhooks.conftest import eventually
from support.services import free_port
from support.webhook_receiver import WebhookReceiver

Call = Any


async def test_slow_endpoint_delays_nobody_and_dead_endpoint_is_given_up(
    tenant: Any, call: Call, run_worker: Any, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    hold = asyncio.Event()
    dead_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    async with WebhookReceiver(hold=hold) as slow, WebhookReceiver() as fast:
        for url in (slow.url, fast.url, dead_url):
            await call(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url=url))
        for i in range(5):
            await call(lago.customers.create, Customer(external_id=f"c-{i}"))
        started = time.monotonic()
        worker = run_worker(
            timeout=5.0, max_attempts=3, backoff_initial=0.2, concurrency=6, per_endpoint=2
        )
        async with worker:
            await eventually(lambda: len(fast.accepted) == 5, timeout=10, what="fast deliveries")
            fast_done = time.monotonic() - started
            assert len(slow.requests) == 2, "the slow endpoint holds two slots, no more"
            assert not slow.accepted

            async def given_up() -> int:
                return int(
                    await db.fetchval("SELECT count(*) FROM webhooks WHERE status = 'failed'")
                )

            deadline = time.monotonic() + 20
            while await given_up() < 5:
                assert time.monotonic() < deadline, "the dead endpoint's webhooks never failed"
                await asyncio.sleep(0.1)
            hold.set()
            await eventually(lambda: len(slow.accepted) == 5, timeout=20, what="slow deliveries")
    assert fast_done < 5, f"the fast endpoint waited for the slow one ({fast_done:.1f}s)"
    attempts = await db.fetch(
        "SELECT a.attempt, a.outcome, a.error, a.next_attempt_at - a.started_at AS wait "
        "FROM webhook_attempts a JOIN webhooks w ON w.id = a.webhook_id "
        "JOIN webhook_endpoints e ON e.id = w.webhook_endpoint_id WHERE e.webhook_url = $1 "
        "ORDER BY a.webhook_id, a.attempt",
        dead_url,
    )
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "failed"] * 5
    assert all("ClientConnectorError" in a["error"] for a in attempts)
    waits = [a["wait"].total_seconds() for a in attempts if a["outcome"] == "retrying"]
    # 0.2 s after the first try, 0.4 s after the second: the wait doubles (each wait also
    # holds the try itself, a refused connection, hence the loose upper bounds).
    assert all(0.19 < w < 3 for w in waits[0::2]) and all(0.39 < w < 3 for w in waits[1::2])
