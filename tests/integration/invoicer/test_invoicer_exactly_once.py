"""Closed periods on the real broker become invoices in the real Postgres: amounts to the
cent, one invoice per period whatever is delivered twice or replayed, poison dead-lettered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from invoicer.consumer import Invoicer


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_closed_period_becomes_an_invoice_priced_to_the_cent(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog()
    message = catalog.closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [
            catalog.usage(catalog.standard_charge, "standard", 1234),
            catalog.usage(catalog.graduated_charge, "graduated", 250),
        ],
    )
    await kit.publish(message)
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        assert isinstance(invoicer, Invoicer)
    invoice = await kit.db.fetchrow("SELECT * FROM invoices")
    fees = await kit.db.fetch("SELECT * FROM fees ORDER BY position")
    # Subscription: 17 of January's 31 days of 10.00 = 5.4839 -> 548 cents.
    # Standard: 1234 x 0.05 = 61.70. Graduated: 100 x 0.10 + 1.00 + 150 x 0.05 = 18.50.
    assert [(f["fee_type"], f["amount_cents"]) for f in fees] == [
        ("subscription", 548),
        ("charge", 6170),
        ("charge", 1850),
    ]
    assert invoice["fees_amount_cents"] == 8568
    assert invoice["sub_total_excluding_taxes_amount_cents"] == 8568
    assert invoice["sub_total_including_taxes_amount_cents"] == 8568
    assert invoice["taxes_amount_cents"] == 0
    assert invoice["total_amount_cents"] == 8568
    assert invoice["status"] == "finalized"
    assert invoice["issuing_date"] == date(2026, 2, 1)
    assert invoice["sequential_id"] == 1
    assert invoice["number"].startswith("ACM-")
    assert invoice["number"].endswith("-001-001")
    assert str(fees[1]["units"]) == "1234"
    assert fees[1]["events_count"] == 1234


async def test_duplicates_and_replays_leave_one_invoice_per_period(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog()
    january = catalog.closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [catalog.usage(catalog.standard_charge, "standard", 10)],
    )
    february = catalog.closed(
        utc(2026, 2, 1), utc(2026, 3, 1), [catalog.usage(catalog.standard_charge, "standard", 20)]
    )
    # The same close delivered three times (the aggregator resends after a crash).
    await kit.publish(january, january, february, january)
    async with start_invoicer() as first:
        await kit.wait_for_invoices(2)
        await _drained(first, 4)
    totals = await kit.db.fetch("SELECT total_amount_cents FROM invoices ORDER BY period_start")
    assert [r["total_amount_cents"] for r in totals] == [548 + 50, 1000 + 100]
    before = await kit.db.fetch("SELECT id, number FROM invoices ORDER BY period_start")
    # Replay the whole topic with a new consumer group: nothing changes.
    async with start_invoicer() as replay:
        await _drained(replay, 4)
    after = await kit.db.fetch("SELECT id, number FROM invoices ORDER BY period_start")
    assert after == before
    assert await kit.db.fetchval("SELECT count(*) FROM fees") == 4
    assert replay.metrics.registry.get_sample_value("invoicer_duplicate_periods_total") == 4


async def _drained(invoicer: Invoicer, messages: int) -> None:
    """Wait until the invoicer has finished `messages` messages (written or skipped)."""
    deadline = time.monotonic() + 60
    while invoicer.metrics.registry.get_sample_value("invoicer_messages_done_total") < messages:
        if time.monotonic() > deadline:
            raise AssertionError(f"the invoicer did not finish {messages} messages")
        await asyncio.sleep(0.1)


async def test_late_events_are_invoiced_as_adjustments_on_the_next_invoice(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog()
    january = catalog.closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [catalog.usage(catalog.graduated_charge, "graduated", 250)],
    )
    february = catalog.closed(
        utc(2026, 2, 1),
        utc(2026, 3, 1),
        [catalog.usage(catalog.graduated_charge, "graduated", 0)],
        adjustments=[
            {
                "period_start": utc(2026, 1, 15, 10).isoformat(),
                "period_end": utc(2026, 2, 1).isoformat(),
                "charges": [catalog.usage(catalog.graduated_charge, "graduated", 10)],
            }
        ],
    )
    await kit.publish(january, february)
    async with start_invoicer():
        await kit.wait_for_invoices(2)
    fees = await kit.db.fetch(
        "SELECT f.amount_cents, f.is_adjustment, f.units FROM fees f JOIN invoices i "
        "ON i.id = f.invoice_id WHERE i.period_start = $1 ORDER BY f.position",
        utc(2026, 2, 1),
    )
    # February: plan 10.00, graduated 0 units 1.00 (the first tier's flat amount, charged
    # even without usage: lago-api #5760), late 10 units on top of January's 250: 260 units
    # cost 19.00 against 18.50 invoiced, so 0.50.
    assert [(f["amount_cents"], f["is_adjustment"]) for f in fees] == [
        (1000, False),
        (100, False),
        (50, True),
    ]
    assert str(fees[2]["units"]) == "10"


async def test_poison_messages_are_dead_lettered_and_the_rest_invoiced(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog()
    good = catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), [])
    unknown = {**good, "subscription_id": "00000000-0000-0000-0000-000000000001"}
    unknown["period_key"] = "00000000-0000-0000-0000-000000000001:2026-02-01T00:00:00Z"
    await kit.publish(
        (b"k", b"{not json"),
        (b"k", b"\xff\xfe"),
        (catalog.external_subscription_id.encode(), orjson.dumps(unknown)),
        good,
    )
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        await _drained(invoicer, 4)
    letters = await kit.dead_letters(3)
    assert sorted(d["reason"] for d in letters) == [
        "invalid_json",
        "invalid_json",
        "subscription_not_found",
    ]
    assert all(d["source"]["service"] == "invoicer" for d in letters)
    assert any(d["payload_base64"] for d in letters)
    assert await kit.invoices() == 1


async def test_grace_period_drafts_then_finalizes(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog(grace_days=3)
    now = datetime.now(UTC).replace(microsecond=0)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    message = catalog.closed(start, now, [])
    await kit.publish(message)
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        row = await kit.db.fetchrow("SELECT status, grace_until FROM invoices")
        assert row["status"] == "draft"
        assert row["grace_until"] is not None
        finalized = await invoicer.finalize_due_drafts(row["grace_until"])
        assert finalized == 1
    assert await kit.db.fetchval("SELECT status FROM invoices") == "finalized"


async def test_two_workers_and_a_rebalance_still_invoice_each_period_once(
    kit: Any, start_invoicer: Callable[..., Any], unique: str
) -> None:
    catalogs = [await kit.catalog() for _ in range(8)]
    messages = [
        c.closed(utc(2026, m, 1), utc(2026, m + 1, 1), [c.usage(c.standard_charge, "standard", m)])
        for m in range(2, 12)
        for c in catalogs
    ]
    group = f"invoicer-shared-{unique}"
    await kit.publish(*messages[:40])
    async with start_invoicer(group_id=group, batch_size=5):
        await kit.wait_for_invoices(5)
        # A second worker joins mid-stream: partitions move, some messages come again.
        async with start_invoicer(group_id=group, batch_size=5):
            await kit.publish(*messages[40:])
            await kit.wait_for_invoices(len(messages))
        await asyncio.sleep(1)
    assert await kit.invoices() == len(messages)
    assert await kit.db.fetchval("SELECT count(DISTINCT period_key) FROM invoices") == 80
    sequences = await kit.db.fetch(
        "SELECT customer_id, array_agg(sequential_id ORDER BY period_start) AS ids "
        "FROM invoices GROUP BY customer_id"
    )
    assert all(list(r["ids"]) == list(range(1, 11)) for r in sequences)


async def test_a_period_that_cannot_be_written_leaves_the_rest_of_its_round_invoiced(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    """Four customers' periods invoiced in rounds; one has more units than its price can be
    computed for (an unexpected error, not a known poison): the round is invoiced period by
    period, so only that one is dead-lettered."""
    catalogs = [await kit.catalog() for _ in range(4)]
    messages = [
        c.closed(utc(2026, 2, 1), utc(2026, 3, 1), [c.usage(c.standard_charge, "standard", 10)])
        for c in catalogs
    ]
    huge = {**messages[1]["charges"][0], "units": "1" + "0" * 30, "events_count": 1}
    messages[1] = {**messages[1], "charges": [huge]}
    await kit.publish(*messages)
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(3)
        await _drained(invoicer, 4)
    letters = await kit.dead_letters(1)
    assert [(d["reason"], d["source"]["service"]) for d in letters] == [
        ("unexpected_error", "invoicer")
    ]
    assert await kit.invoices() == 3
    assert await kit.db.fetchval("SELECT count(*) FROM fees") == 3 * 2
