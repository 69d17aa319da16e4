"""Coupons on real invoices: oldest first, before taxes, a fixed amount carried over from
invoice to invoice, a recurring one counting down, and never consumed twice: not by a
replay of the closed periods, not by an invoice priced on a state that changed since."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from lago_python_client.client import Client
from lago_python_client.models import AppliedCoupon, Coupon, Tax

from gateway.organizations import create_organization
from invoicing import terms, write
from invoicing.closed_period import parse_period_closed
from invoicing.pricing import price_period
from meterflow.settings import Settings

from .conftest import call, drained


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def _setup(kit: Any, settings: Settings, api_url: str) -> tuple[Any, Client]:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=api_url)
    catalog = await kit.catalog(organization_id=org.id)
    await call(
        lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0, applied_to_organization=True)
    )
    await call(
        lago.coupons.create,
        Coupon(name="Welcome", code="welcome", coupon_type="fixed_amount", amount_cents=10000,
               amount_currency="EUR", frequency="once", expiration="no_expiration"),
    )  # fmt: skip
    await call(
        lago.coupons.create,
        Coupon(name="Ten", code="ten", coupon_type="percentage", percentage_rate=10.0,
               frequency="recurring", frequency_duration=2, expiration="no_expiration"),
    )  # fmt: skip
    for code in ("welcome", "ten"):  # applied in this order: welcome is the oldest
        await call(
            lago.applied_coupons.create,
            AppliedCoupon(external_customer_id=catalog.external_customer_id, coupon_code=code),
        )
    return catalog, lago


async def _coupon_states(kit: Any) -> list[tuple[str, str, int | None, int | None]]:
    rows = await kit.db.fetch(
        "SELECT c.code, ac.status, ac.amount_cents_remaining, ac.frequency_duration_remaining "
        "FROM applied_coupons ac JOIN coupons c ON c.id = ac.coupon_id ORDER BY ac.created_at"
    )
    return [tuple(r) for r in rows]


async def test_coupons_carry_over_count_down_and_survive_replays(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    catalog, lago = await _setup(kit, settings, lago_api.url)
    january = catalog.closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [
            catalog.usage(catalog.standard_charge, "standard", 1234),
            catalog.usage(catalog.graduated_charge, "graduated", 250),
        ],
    )
    february = catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), [])
    march = catalog.closed(utc(2026, 3, 1), utc(2026, 4, 1), [])
    await kit.publish(january, february, january, march)  # January delivered twice
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(3)
        await drained(invoicer, 4)

    rows = await kit.db.fetch(
        "SELECT fees_amount_cents, coupons_amount_cents, sub_total_excluding_taxes_amount_cents, "
        "taxes_amount_cents, total_amount_cents, credits FROM invoices ORDER BY period_start"
    )
    # January: fees 8568. Welcome (10000, oldest) takes all 8568, 1432 left; nothing is left
    # for Ten, which therefore keeps its two periods. Taxes on 0: 0.
    # February: fees 1000. Welcome takes 1000, 432 left. Ten again waits.
    # March: fees 1000. Welcome takes its last 432 and ends; Ten takes 10 % of 568 = 56.8
    # -> 57 and has one period left. Coupons 489; 511 taxed at 20 % = 102.2 -> 102; 613.
    assert [tuple(r)[:5] for r in rows] == [
        (8568, 8568, 0, 0, 0),
        (1000, 1000, 0, 0, 0),
        (1000, 489, 511, 102, 613),
    ]
    assert [(c["item"]["code"], c["amount_cents"]) for c in orjson.loads(rows[2]["credits"])] == [
        ("welcome", 432),
        ("ten", 57),
    ]
    expected = [("welcome", "terminated", 0, None), ("ten", "active", None, 1)]
    assert await _coupon_states(kit) == expected

    # The invoice API shows the coupon credits and each fee's share of them.
    listed = await call(lago.invoices.find_all, {"issuing_date_from": "2026-04-01"})
    found = await call(lago.invoices.find, listed["invoices"][0].lago_id)
    assert found.coupons_amount_cents == 489
    assert [(c.item.code, c.amount_cents, c.before_taxes) for c in found.credits.__root__] == [
        ("welcome", 432, True),
        ("ten", 57, True),
    ]
    assert found.fees.__root__[0].precise_coupons_amount_cents == "489"

    # Replay the whole topic with a new consumer group: no invoice, no coupon changes.
    before = await kit.db.fetch("SELECT id, total_amount_cents FROM invoices ORDER BY period_start")
    async with start_invoicer() as replay:
        await drained(replay, 4)
    assert (
        await kit.db.fetch("SELECT id, total_amount_cents FROM invoices ORDER BY period_start")
        == before
    )
    assert await _coupon_states(kit) == expected
    assert replay.metrics.registry.get_sample_value("invoicer_duplicate_periods_total") == 4

    # April uses Ten's last period: 10 % of 1000 = 100; 900 x 20 % = 180; 1080.
    await kit.publish(catalog.closed(utc(2026, 4, 1), utc(2026, 5, 1), []))
    async with start_invoicer() as last:
        await kit.wait_for_invoices(4)
        await drained(last, 5)
    april = await kit.db.fetchrow("SELECT * FROM invoices WHERE period_start = $1", utc(2026, 4, 1))
    assert (april["coupons_amount_cents"], april["taxes_amount_cents"]) == (100, 180)
    assert april["total_amount_cents"] == 1080
    assert await _coupon_states(kit) == [
        ("welcome", "terminated", 0, None),
        ("ten", "terminated", None, 0),
    ]


async def test_an_invoice_priced_on_a_coupon_state_that_changed_is_not_written(
    kit: Any, settings: Settings, lago_api: Any
) -> None:
    catalog, _ = await _setup(kit, settings, lago_api.url)
    closed = parse_period_closed(orjson.dumps(catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), [])))
    pool = await write.create_pool(settings.dsn, schema=settings.db_schema, size=2)
    try:
        async with pool.acquire() as conn:
            loaded = await terms.load(conn, closed)
            priced = price_period(closed, loaded.terms, {})
            assert priced.totals.coupons_amount_cents == 1000
            # Meanwhile another invoice of the customer used the coupon.
            await kit.db.execute(
                "UPDATE applied_coupons SET amount_cents_remaining = 200 "
                "WHERE coupon_id = (SELECT id FROM coupons WHERE code = 'welcome')"
            )
            with pytest.raises(write.CreditsChanged):
                await write.insert_invoice(conn, closed, loaded, priced)
            # Nothing of it was written: no invoice, no fee, no sequence number used.
            assert await kit.invoices() == 0
            assert await kit.db.fetchval("SELECT count(*) FROM fees") == 0
            assert await kit.db.fetchval("SELECT count(*) FROM invoice_sequences") == 0
            # Priced again on the state as it is, it goes through.
            loaded = await terms.load(conn, closed)
            priced = price_period(closed, loaded.terms, {})
            # Welcome's 200 left, then Ten 10 % of 800 = 80; 720 x 20 % = 144; 864.
            assert priced.totals.coupons_amount_cents == 280
            assert priced.totals.total_amount_cents == 864
            await write.insert_invoice(conn, closed, loaded, priced)
    finally:
        await pool.close()
    assert await _coupon_states(kit) == [
        ("welcome", "terminated", 0, None),
        ("ten", "active", None, 1),
    ]


async def test_a_second_write_of_a_period_with_coupons_changes_nothing(
    kit: Any, settings: Settings, lago_api: Any
) -> None:
    catalog, _ = await _setup(kit, settings, lago_api.url)
    closed = parse_period_closed(orjson.dumps(catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), [])))
    pool = await write.create_pool(settings.dsn, schema=settings.db_schema, size=2)
    try:
        async with pool.acquire() as conn:
            # Two consumers raced past the duplicate check with the same coupon state.
            loaded = await terms.load(conn, closed)
            priced = price_period(closed, loaded.terms, {})
            await write.insert_invoice(conn, closed, loaded, priced)
            with pytest.raises(write.AlreadyInvoiced):
                await write.insert_invoice(conn, closed, loaded, priced)
    finally:
        await pool.close()
    # Welcome took February's 1000 once: 9000 left (not 8000), Ten untouched.
    assert await _coupon_states(kit) == [
        ("welcome", "active", 9000, None),
        ("ten", "active", None, 2),
    ]
    assert await kit.invoices() == 1
