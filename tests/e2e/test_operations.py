"""The operator tools against a running `meterflow up`: replay and reconcile find no
difference after client retries and a SIGKILLed aggregator, then exactly the corrupted fee
(exit 1); dead letters of a poison event and of an unknown subscription are listed, and a
requeue after the subscription exists counts the event once, however often it is sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from meterflow.settings import Settings
from support.meterflow_up import (
    LagoHttp,
    MeterflowUp,
    produce_raw,
    stack_with_catalog,
    wait_for_usage,
)
from support.services import free_port

SUBS = [f"sub-{i}" for i in range(4)]


async def eventually(probe: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, what
        await asyncio.sleep(1)


async def cli_json(up: MeterflowUp, *args: str, **env: str) -> tuple[int, Any]:
    done = await up.cli(*args, "--json", **env)
    assert done.returncode in (0, 1) and done.stdout.startswith(("{", "[")), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


async def send(api: LagoHttp, batch: int, calls: Counter[str], gb: Counter[str]) -> None:
    """A batch of 40 events (calls and gb) sent twice, as a retrying client would."""
    now = int(time.time())
    events = []
    for i in range(40):
        sub, n = SUBS[(i // 2) % 4], batch * 40 + i
        if i % 2:
            events.append(
                {
                    "transaction_id": f"c{n}",
                    "external_subscription_id": sub,
                    "code": "calls",
                    "timestamp": now,
                }
            )
            calls[sub] += 1
        else:
            events.append(
                {
                    "transaction_id": f"g{n}",
                    "external_subscription_id": sub,
                    "code": "gb",
                    "timestamp": now,
                    "properties": {"gb": "1.5"},
                }
            )
            gb[sub] += 1
    for _ in range(2):
        await api.ok("POST", "/api/v1/events/batch", {"events": events})


async def test_replay_and_reconcile_after_retries_and_a_sigkill_then_a_corrupted_fee(
    settings: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with stack_with_catalog(
        settings,
        tmp_path,
        SUBS,
        METERFLOW_AGGREGATOR_CLOSE_GRACE="0",
        METERFLOW_AGGREGATOR_CLOSE_INTERVAL="0.5",
    ) as (up, api):
        calls: Counter[str] = Counter()
        gb: Counter[str] = Counter()
        for batch in range(30):
            await send(api, batch, calls, gb)
            if batch == 10:
                victim = (await up.service("aggregator"))["pid"]
                os.kill(victim, signal.SIGKILL)
        expected = {
            s: {"calls": (Decimal(calls[s]), calls[s]), "gb": (Decimal("1.5") * gb[s], gb[s])}
            for s in SUBS
        }

        last: list[Any] = [None]

        async def settled() -> bool:
            found = {s: await api.usage("acme", s) for s in SUBS}
            last[0] = {
                s: {code: (Decimal(units), n) for code, (units, n) in (usage or {}).items()}
                for s, usage in found.items()
            }
            return bool(last[0] == expected)

        try:
            await eventually(settled, "live totals never reached what was sent")
        finally:
            print("live totals", last[0], "expected", expected)
        assert (await up.service("aggregator"))["restarts"] == 1
        for sub in SUBS[:2]:
            await api.ok("DELETE", f"/api/v1/subscriptions/{sub}")

        async def invoiced() -> bool:
            return await db.fetchval("SELECT count(*) FROM invoices") == 2

        await eventually(invoiced, "the terminated subscriptions were never invoiced")

        code, replay = await cli_json(up, "replay")
        assert (code, replay["differences"]) == (0, 0), replay
        sources = {r["external_subscription_id"]: r["compared_with"] for r in replay["rows"]}
        assert [sources[s].split()[0] for s in SUBS] == ["invoice", "invoice", "live", "live"]
        assert sum(r["replay"]["events_count"] for r in replay["rows"]) == sum(
            calls.values()
        ) + sum(gb.values())
        assert replay["events"]["duplicate"] == sum(calls.values()) + sum(gb.values())
        # No aggregator worker answers: the current periods are compared with nothing
        # (not with zero, which would be a difference on every row).
        down = f"http://127.0.0.1:{free_port()}"
        code, blind = await cli_json(up, "replay", METERFLOW_AGGREGATOR_URL=down)
        assert (code, blind["differences"]) == (0, 0), blind
        sources = {r["external_subscription_id"]: r["compared_with"] for r in blind["rows"]}
        assert [sources[s].split()[0] for s in SUBS] == ["invoice", "invoice", "live", "live"]
        assert {sources[s] for s in SUBS[2:]} == {"live unavailable"}

        code, reconciled = await cli_json(up, "reconcile")
        assert (code, reconciled["differences"]) == (0, 0), reconciled
        assert len(reconciled["invoices"]) == 2

        code, lag = await cli_json(up, "lag")
        groups = {row["group"] for row in lag}
        assert f"{settings.topics.prefix}aggregator" in groups, lag

        invoice_id = await db.fetchval(
            "SELECT i.id FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id "
            "WHERE s.external_id = 'sub-0'"
        )
        await db.execute(
            "UPDATE fees SET units = units + 1, amount_cents = amount_cents + 1 "
            "WHERE invoice_id = $1 AND item_code = 'calls'",
            invoice_id,
        )
        code, replay = await cli_json(up, "replay")
        differ = [r for r in replay["rows"] if r["differs"]]
        assert code == 1
        assert [(r["external_subscription_id"], r["charge"]) for r in differ] == [
            ("sub-0", "calls")
        ]
        row = differ[0]
        assert Decimal(row["recorded"]["units"]) == Decimal(row["replay"]["units"]) + 1

        code, reconciled = await cli_json(up, "reconcile")
        assert code == 1
        found = [
            (d["external_subscription_id"], d["line"], d["field"])
            for i in reconciled["invoices"]
            for d in i["differences"]
        ]
        assert found == [("sub-0", "calls", "units"), ("sub-0", "calls", "amount_cents")]
        text = await up.cli("reconcile", "--invoice", str(invoice_id), "--no-progress")
        assert text.returncode == 1
        assert "1 invoice(s) recomputed, 2 difference(s)" in text.stdout, text.stdout


async def test_dead_letters_listed_then_requeued_once(settings: Settings, tmp_path: Path) -> None:
    async with stack_with_catalog(
        settings,
        tmp_path,
        ["sub-known"],
        METERFLOW_AGGREGATOR_HOLD_WINDOW="1",
        METERFLOW_AGGREGATOR_CLOSE_INTERVAL="0.5",
    ) as (up, api):
        event = {
            "transaction_id": "early-1",
            "external_subscription_id": "sub-late",
            "code": "calls",
            "timestamp": int(time.time()),
        }
        await api.ok("POST", "/api/v1/events", {"event": event})
        await produce_raw(settings, settings.topics.events, b"{poison", b"sub-known")

        async def two_letters() -> Any:
            _, listed = await cli_json(up, "dead-letters", "list")
            return listed if len(listed["dead_letters"]) == 2 else None

        listed = await eventually(two_letters, "the two dead letters never arrived")
        assert listed["left"] == 2
        by_reason = {x["reason"]: x for x in listed["dead_letters"]}
        assert "unknown_subscription" in by_reason, by_reason
        held = by_reason["unknown_subscription"]
        assert (held["external_subscription_id"], held["transaction_id"]) == ("sub-late", "early-1")
        shown = await up.cli("dead-letters", "show", held["id"])
        assert '"transaction_id": "early-1"' in shown.stdout or "early-1" in shown.stdout

        await api.subscribe("acme", "sub-late")
        await wait_for_usage(api, "acme", "sub-late")
        done = await up.cli("dead-letters", "requeue", "--all", "--reason", "unknown_subscription")
        assert done.returncode == 0, done.stderr
        assert f"requeued 1: {held['id']}" in done.stdout
        assert "1 dead letter(s) left" in done.stdout

        async def counted_once() -> bool:
            return await api.usage("acme", "sub-late") == {"calls": ("1", 1), "gb": ("0", 0)}

        await eventually(counted_once, "the requeued event was not counted")
        again = await up.cli("dead-letters", "requeue", held["id"])
        assert "requeued 0" in again.stdout and "skipped 1" in again.stdout, again.stdout
        forced = await up.cli("dead-letters", "requeue", held["id"], "--again")
        assert "requeued 1" in forced.stdout, forced.stdout
        await asyncio.sleep(5)  # the aggregator has read it: the dedupe drops it
        assert await counted_once(), "a second requeue counted the event again"
        _, listed = await cli_json(up, "dead-letters", "list", "--reason", "unknown_subscription")
        assert listed["dead_letters"][0]["requeued"] == 2
        assert listed["left"] == 0
