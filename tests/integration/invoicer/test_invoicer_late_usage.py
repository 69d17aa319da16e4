"""Late usage on the real broker and database: it refreshes its period's draft (fees,
coupons, taxes, totals) until the grace ends, is billed as adjustment fees on the next
invoice once its period's invoice is finalized, and applies once whatever is delivered
twice or replayed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from .conftest import Catalog, drained


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


JAN_15, FEB_1, MAR_1 = utc(2026, 1, 15, 10), utc(2026, 2, 1), utc(2026, 3, 1)
# Long enough for January's invoice to still be a draft today.
GRACE_DAYS = 3650


def late_usage(
    catalog: Catalog, closed: dict[str, Any], charges: list[dict[str, Any]], seq: int
) -> dict[str, Any]:
    """A late_usage message, shaped as the aggregator's `PeriodCloser._emit_late` writes it."""
    return {
        "type": "late_usage",
        "late_key": f"{closed['period_key']}:late:{seq}",
        "period_key": closed["period_key"],
        "organization_id": catalog.organization_id,
        "subscription_id": catalog.subscription_id,
        "external_subscription_id": catalog.external_subscription_id,
        "external_customer_id": catalog.external_customer_id,
        "plan_code": "startup",
        "currency": "EUR",
        "period_start": closed["period_start"],
        "period_end": closed["period_end"],
        "charges": charges,
        "closed_at": closed["period_end"],
    }


def january(catalog: Catalog) -> dict[str, Any]:
    return catalog.closed(
        JAN_15,
        FEB_1,
        [
            catalog.usage(catalog.standard_charge, "standard", 1234),
            catalog.usage(catalog.graduated_charge, "graduated", 250),
        ],
    )


def late_charges(catalog: Catalog, standard: int, graduated: int) -> list[dict[str, Any]]:
    return [
        catalog.usage(catalog.standard_charge, "standard", standard),
        catalog.usage(catalog.graduated_charge, "graduated", graduated),
    ]


async def vat_and_coupon(db: asyncpg.Connection, catalog: Catalog) -> None:
    """The organization's default VAT of 20 %, and a fixed 50.00 EUR coupon used once."""
    org = uuid.UUID(catalog.organization_id)
    await db.execute(
        "INSERT INTO taxes (id, organization_id, code, name, rate, applied_to_organization) "
        "VALUES ($1, $2, 'vat', 'VAT', 20, true)",
        uuid.uuid4(),
        org,
    )
    coupon = uuid.uuid4()
    await db.execute(
        "INSERT INTO coupons (id, organization_id, code, name, coupon_type, amount_cents, "
        "amount_currency, frequency) VALUES ($1, $2, 'welcome', 'Welcome', 'fixed_amount', "
        "5000, 'EUR', 'once')",
        coupon,
        org,
    )
    await db.execute(
        "INSERT INTO applied_coupons (id, organization_id, coupon_id, customer_id, amount_cents, "
        "amount_currency, frequency) VALUES ($1, $2, $3, $4, 5000, 'EUR', 'once')",
        uuid.uuid4(),
        org,
        coupon,
        uuid.UUID(catalog.customer_id),
    )


async def fees_of(db: asyncpg.Connection, period_start: datetime) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT f.* FROM fees f JOIN invoices i ON i.id = f.invoice_id "
            "WHERE i.period_start = $1 ORDER BY f.position",
            period_start,
        )
    )


def totals(invoice: asyncpg.Record) -> tuple[int, int, int, int]:
    return (
        invoice["fees_amount_cents"],
        invoice["coupons_amount_cents"],
        invoice["taxes_amount_cents"],
        invoice["total_amount_cents"],
    )


async def test_late_usage_refreshes_the_draft_until_the_grace_ends_then_it_is_finalized(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog(grace_days=GRACE_DAYS)
    await vat_and_coupon(kit.db, catalog)
    closed = january(catalog)
    await kit.publish(closed)
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        draft = await kit.db.fetchrow("SELECT * FROM invoices")
        assert draft["status"] == "draft"
        # Subscription 17/31 of 10.00 = 548; standard 1234 x 0.05 = 61.70; graduated 250:
        # 100 x 0.10 + 1.00 + 150 x 0.05 = 18.50. Fees 8568, coupon 5000, VAT 20 % of 3568 =
        # 713.6 -> 714, total 4282.
        assert totals(draft) == (8568, 5000, 714, 4282)
        await kit.publish(late_usage(catalog, closed, late_charges(catalog, 6, 10), seq=5))
        await drained(invoicer, 2)
        refreshed = await kit.db.fetchrow("SELECT * FROM invoices")
        fees = await fees_of(kit.db, JAN_15)
        # Standard 1240 x 0.05 = 62.00; graduated 260: 100 x 0.10 + 1.00 + 160 x 0.05 =
        # 19.00. Fees 548 + 6200 + 1900 = 8648; the coupon's share is given back and taken
        # again: 5000; VAT 20 % of 3648 = 729.6 -> 730; total 3648 + 730 = 4378.
        assert [(f["amount_cents"], f["is_adjustment"]) for f in fees] == [
            (548, False),
            (6200, False),
            (1900, False),
        ]
        assert [str(f["units"]) for f in fees[1:]] == ["1240", "260"]
        assert orjson.loads(fees[2]["aggregation"]) == {"type": "count_agg", "events_count": 260}
        assert [f["taxes_amount_cents"] for f in fees] == [
            # Each fee's VAT on its amount less its share of the coupon (5000 x fee / 8648).
            round((548 - 5000 * 548 / 8648) * 0.2),
            round((6200 - 5000 * 6200 / 8648) * 0.2),
            round((1900 - 5000 * 1900 / 8648) * 0.2),
        ]
        assert totals(refreshed) == (8648, 5000, 730, 4378)
        assert refreshed["id"] == draft["id"] and refreshed["status"] == "draft"
        applied = orjson.loads(refreshed["applied_taxes"])
        assert [(Decimal(a["taxable_base_amount_cents"]), a["amount_cents"]) for a in applied] == [
            (Decimal(3648), 730)
        ]
        assert [c["amount_cents"] for c in orjson.loads(refreshed["credits"])] == [5000]
        coupon = await kit.db.fetchrow("SELECT status, amount_cents_remaining FROM applied_coupons")
        assert tuple(coupon) == ("terminated", 0)
        assert await kit.db.fetchval("SELECT outcome FROM late_usage") == "refreshed"
        # The grace ends: the sweep finalizes the refreshed draft.
        assert await invoicer.finalize_due_drafts(draft["grace_until"]) == 1
    final = await kit.db.fetchrow("SELECT * FROM invoices")
    assert final["status"] == "finalized"
    assert totals(final) == (8648, 5000, 730, 4378)


async def test_late_usage_after_finalization_is_an_adjustment_on_the_next_invoice(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog(grace_days=GRACE_DAYS)
    closed = january(catalog)
    await kit.publish(closed)
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        grace_until = await kit.db.fetchval("SELECT grace_until FROM invoices")
        assert await invoicer.finalize_due_drafts(grace_until) == 1
        before = await kit.db.fetchrow("SELECT * FROM invoices")
        await kit.publish(late_usage(catalog, closed, late_charges(catalog, 6, 10), seq=5))
        await drained(invoicer, 2)
        # The finalized invoice is not touched: the late usage waits.
        assert await kit.db.fetchrow("SELECT * FROM invoices") == before
        assert await kit.db.fetchval("SELECT outcome FROM late_usage") == "pending"
        await kit.publish(catalog.closed(FEB_1, MAR_1, late_charges(catalog, 0, 0)))
        await kit.wait_for_invoices(2)
    fees = await fees_of(kit.db, FEB_1)
    # February: plan 10.00, no usage (the graduated charge's first tier still costs its flat
    # 1.00: lago-api #5760); January's late usage on top of what was invoiced:
    # standard 1240 x 0.05 - 61.70 = 0.30; graduated 19.00 - 18.50 = 0.50.
    assert [(f["amount_cents"], f["is_adjustment"]) for f in fees] == [
        (1000, False),
        (0, False),
        (100, False),
        (30, True),
        (50, True),
    ]
    assert {f["usage_period_start"] for f in fees[3:]} == {JAN_15}
    february = await kit.db.fetchrow("SELECT * FROM invoices WHERE period_start = $1", FEB_1)
    assert february["fees_amount_cents"] == 1180
    row = await kit.db.fetchrow("SELECT outcome, invoice_id FROM late_usage")
    assert tuple(row) == ("adjusted", february["id"])


async def test_late_usage_delivered_twice_or_replayed_applies_once(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog(grace_days=GRACE_DAYS)
    closed = january(catalog)
    first = late_usage(catalog, closed, late_charges(catalog, 6, 10), seq=5)
    second = late_usage(catalog, closed, late_charges(catalog, 6, 10), seq=8)
    # The aggregator resends its outbox after a crash: the same late_key twice.
    await kit.publish(closed, first, first, second)
    async with start_invoicer() as invoicer:
        await drained(invoicer, 4)
        fees = await fees_of(kit.db, JAN_15)
        # Two distinct late messages of 6 and 10: standard 1246 x 0.05 = 62.30; graduated
        # 270: 100 x 0.10 + 1.00 + 170 x 0.05 = 19.50.
        assert [f["amount_cents"] for f in fees] == [548, 6230, 1950]
        grace_until = await kit.db.fetchval("SELECT grace_until FROM invoices")
        assert await invoicer.finalize_due_drafts(grace_until) == 1
        third = late_usage(catalog, closed, late_charges(catalog, 0, 30), seq=11)
        february = catalog.closed(FEB_1, MAR_1, late_charges(catalog, 0, 0))
        await kit.publish(third, third, february, third)
        await drained(invoicer, 8)
        metric = invoicer.metrics.registry.get_sample_value
        assert metric("invoicer_late_usage_total", {"outcome": "duplicate"}) == 3
    snapshot = (
        "SELECT i.id, i.status, i.total_amount_cents, f.position, f.amount_cents "
        "FROM invoices i JOIN fees f ON f.invoice_id = i.id ORDER BY i.period_start, f.position"
    )
    before = await kit.db.fetch(snapshot)
    # February bills the 30 late graduated units once: 270 -> 300 units is 1.50 (and its
    # own 0 graduated units the first tier's flat 1.00).
    assert [r["amount_cents"] for r in before[3:]] == [1000, 0, 100, 150]
    # Replay the whole topic with a new consumer group: nothing changes.
    async with start_invoicer() as replay:
        await drained(replay, 8)
        metric = replay.metrics.registry.get_sample_value
        assert metric("invoicer_late_usage_total", {"outcome": "duplicate"}) == 6
    assert await kit.db.fetch(snapshot) == before
    assert await kit.db.fetchval("SELECT count(*) FROM late_usage") == 3


async def test_late_usage_of_a_period_without_an_invoice_waits_for_a_later_periods_invoice(
    kit: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog = await kit.catalog()
    closed = january(catalog)
    # January's close never made an invoice (say it was dead-lettered): its late usage
    # waits, and January's own invoice, once the close is republished, does not take it.
    await kit.publish(late_usage(catalog, closed, late_charges(catalog, 0, 10), seq=5))
    async with start_invoicer() as invoicer:
        await drained(invoicer, 1)
        assert await kit.db.fetchval("SELECT outcome FROM late_usage") == "pending"
        await kit.publish(closed)
        await kit.wait_for_invoices(1)
        assert [f["amount_cents"] for f in await fees_of(kit.db, JAN_15)] == [548, 6170, 1850]
        await kit.publish(catalog.closed(FEB_1, MAR_1, late_charges(catalog, 0, 0)))
        await kit.wait_for_invoices(2)
    # February bills it on top of January's invoice: 260 graduated units 19.00 - 18.50
    # (and its own 0 graduated units the first tier's flat 1.00).
    fees = await fees_of(kit.db, FEB_1)
    assert [(f["amount_cents"], f["is_adjustment"]) for f in fees] == [
        (1000, False),
        (0, False),
        (100, False),
        (50, True),
    ]
    assert await kit.db.fetchval("SELECT outcome FROM late_usage") == "adjusted"
