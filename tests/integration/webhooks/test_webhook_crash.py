"""Crash safety: invoices the invoicer committed are announced even though the webhook worker
is SIGKILLed while their deliveries are in flight (a new worker sends each once more, with
the same unique key, and the receiver accepts each key exactly once), and an invoicer
SIGKILLed between its commit and its offset commit announces its invoice once."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from integration.invoicer.conftest import kit, start_invoicer, utc
from integration.webhooks.conftest import eventually
from meterflow.settings import Settings
from support.services import ServiceProcess, free_port, service_env
from support.webhook_receiver import WebhookReceiver

__all__ = ["kit", "start_invoicer"]


def _worker(settings: Settings, tmp_path: Path, name: str) -> ServiceProcess:
    env = service_env(
        settings,
        tmp_path,
        METERFLOW_WEBHOOKS_METRICS_PORT=str(free_port()),
        METERFLOW_WEBHOOKS_TIMEOUT="6",
        METERFLOW_WEBHOOKS_POLL="0.05",
        METERFLOW_WEBHOOKS_BACKOFF_INITIAL="0.1",
    )
    return ServiceProcess("webhooks", env, tmp_path / f"{name}.log")


async def test_sigkill_between_commit_and_delivery_still_delivers_once_per_key(
    kit: Any,
    start_invoicer: Any,
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    org = uuid.uuid4()
    await db.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Acme')", org)
    catalogs = [await kit.catalog(organization_id=org) for _ in range(3)]
    hold = asyncio.Event()
    async with WebhookReceiver(hold=hold) as receiver:
        await db.execute(
            "INSERT INTO webhook_endpoints (id, organization_id, webhook_url) VALUES ($1, $2, $3)",
            uuid.uuid4(),
            org,
            receiver.url,
        )
        await kit.publish(*(c.closed(utc(2026, 1, 15, 10), utc(2026, 2, 1), []) for c in catalogs))
        async with start_invoicer():
            await kit.wait_for_invoices(3)
        invoices = {str(r["id"]) for r in await db.fetch("SELECT id FROM invoices")}
        keys = {str(r["id"]) for r in await db.fetch("SELECT id FROM webhooks")}
        assert len(keys) == 3, "one webhook per invoice, committed with it"

        first = _worker(settings, tmp_path, "first")
        first.start()
        try:
            await eventually(lambda: len(receiver.requests) == 3, what="3 requests in flight")
            assert first.proc is not None
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
        finally:
            first.stop()
        pending = await db.fetch("SELECT status, attempts FROM webhooks")
        assert [(r["status"], r["attempts"]) for r in pending] == [("pending", 1)] * 3
        assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 0
        hold.set()

        second = _worker(settings, tmp_path, "second")
        second.start()
        try:
            await eventually(lambda: len(receiver.accepted) == 3, what="3 deliveries")
            await asyncio.sleep(0.5)
        finally:
            assert second.stop() == 0, second.log_tail()

    assert dict(receiver.accepted) == dict.fromkeys(keys, 1)
    delivered = receiver.delivered()
    assert {r.payload["invoice"]["lago_id"] for r in delivered.values()} == invoices
    assert {r.payload["webhook_type"] for r in delivered.values()} == {"invoice.created"}
    outcomes = await db.fetch("SELECT status, attempts FROM webhooks")
    assert [(r["status"], r["attempts"]) for r in outcomes] == [("succeeded", 2)] * 3


async def test_invoicer_sigkilled_after_its_commit_announces_each_invoice_once(
    kit: Any,
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
    run_worker: Any,
    unique: str,
) -> None:
    org = uuid.uuid4()
    await db.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Acme')", org)
    catalog = await kit.catalog(organization_id=org)
    async with WebhookReceiver(fail_first=1) as receiver:
        await db.execute(
            "INSERT INTO webhook_endpoints (id, organization_id, webhook_url) VALUES ($1, $2, $3)",
            uuid.uuid4(),
            org,
            receiver.url,
        )
        await kit.publish(catalog.closed(utc(2026, 1, 15, 10), utc(2026, 2, 1), []))
        env = service_env(
            settings,
            tmp_path,
            METERFLOW_INVOICER_GROUP=f"invoicer-{unique}",
            METERFLOW_INVOICER_METRICS_PORT=str(free_port()),
        )
        crashing = ServiceProcess(
            "invoicer",
            {**env, "METERFLOW_INVOICER_FAULT": "kill_after_db_commit"},
            tmp_path / "a.log",
        )
        crashing.start()
        assert crashing.proc is not None
        await asyncio.to_thread(crashing.proc.wait, 60)
        assert crashing.proc.returncode == -signal.SIGKILL
        # The invoice and its webhook committed together; the offset did not.
        assert await db.fetchval("SELECT count(*) FROM webhooks") == 1
        env["METERFLOW_INVOICER_METRICS_PORT"] = str(free_port())
        restarted = ServiceProcess("invoicer", env, tmp_path / "b.log")
        restarted.start()
        try:
            # The restart reads the period again (its offset was not committed), finds it
            # invoiced and commits: nothing new is written, no second webhook.
            deadline = time.monotonic() + 60
            while await kit.committed(f"invoicer-{unique}") < 1:
                assert time.monotonic() < deadline, restarted.log_tail()
                await asyncio.sleep(0.2)
            async with run_worker():
                await eventually(lambda: len(receiver.accepted) == 1, what="the delivery")
                await asyncio.sleep(1.0)
        finally:
            assert restarted.stop() == 0, restarted.log_tail()
    assert await kit.invoices() == 1
    assert await db.fetchval("SELECT count(*) FROM webhooks") == 1, "the redelivered period"
    (key,) = receiver.accepted
    assert receiver.accepted[key] == 1
    assert receiver.delivered()[key].payload["webhook_type"] == "invoice.created"
