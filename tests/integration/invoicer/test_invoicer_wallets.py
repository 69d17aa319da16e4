"""Prepaid credits on real invoices: wallets pay the total after taxes by priority, a draft
is paid only when finalized, and nothing is consumed twice: not by a replay of the
closed periods, not by finalizing twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import Tax, Wallet

from gateway.organizations import create_organization
from meterflow.settings import Settings

from .conftest import call, drained


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def _balances(kit: Any) -> list[tuple[str, int, int]]:
    rows = await kit.db.fetch(
        "SELECT code, balance_cents, consumed_amount_cents FROM wallets ORDER BY code"
    )
    return [tuple(r) for r in rows]


async def test_wallets_pay_finalized_invoices_once(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    await call(
        lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0, applied_to_organization=True)
    )
    catalog = await kit.catalog(organization_id=org.id)
    customer = catalog.external_customer_id
    # main: 100 credits at 1.00 = 10000 cents, priority 50 (the default), created first.
    # vip: 10 paid credits at 2.00 = 2000 cents, priority 1: it pays first.
    await call(
        lago.wallets.create,
        Wallet(
            external_customer_id=customer,
            code="main",
            rate_amount="1",
            currency="EUR",
            granted_credits="100",
        ),
    )
    await call(
        lago.wallets.create,
        Wallet(
            external_customer_id=customer,
            code="vip",
            priority=1,
            rate_amount="2",
            currency="EUR",
            paid_credits="10",
        ),
    )

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
    await kit.publish(january, february, march, february)  # February delivered twice
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(3)
        await drained(invoicer, 4)

    rows = await kit.db.fetch(
        "SELECT sub_total_including_taxes_amount_cents, prepaid_credit_amount_cents, "
        "total_amount_cents, prepaid_granted_credit_amount_cents, "
        "prepaid_purchased_credit_amount_cents FROM invoices ORDER BY period_start"
    )
    # January: 8568 + 20 % (1713.6 -> 1714) = 10282; vip pays 2000 (purchased credits),
    # main 8282 (granted; 1718 left).
    # February: 1000 + 200 = 1200, main pays it all (518 left).
    # March: 1200; main pays its last 518; 682 remain due.
    assert [tuple(r) for r in rows] == [
        (10282, 10282, 0, 8282, 2000),
        (1200, 1200, 0, 1200, 0),
        (1200, 518, 682, 518, 0),
    ]
    expected = [("main", 0, 10000), ("vip", 0, 2000)]
    assert await _balances(kit) == expected
    outbound = await kit.db.fetch(
        "SELECT w.code, t.amount_cents FROM wallet_transactions t JOIN wallets w "
        "ON w.id = t.wallet_id WHERE t.transaction_type = 'outbound' "
        "ORDER BY t.created_at, w.priority"
    )
    assert [tuple(r) for r in outbound] == [
        ("vip", 2000),
        ("main", 8282),
        ("main", 1200),
        ("main", 518),
    ]

    listed = await call(lago.invoices.find_all, {"issuing_date_from": "2026-04-01"})
    found = await call(lago.invoices.find, listed["invoices"][0].lago_id)
    assert (found.prepaid_credit_amount_cents, found.total_amount_cents) == (518, 682)
    january_invoice = await call(
        lago.invoices.find_all, {"issuing_date_from": "2026-02-01", "issuing_date_to": "2026-02-01"}
    )
    first = january_invoice["invoices"][0]
    assert (
        first.prepaid_granted_credit_amount_cents,
        first.prepaid_purchased_credit_amount_cents,
    ) == (
        8282,
        2000,
    )
    main = (await call(lago.wallets.find_all, {"external_customer_id": customer}))["wallets"]
    assert {(w.code, w.credits_balance, w.consumed_credits) for w in main} == {
        ("main", "0.0", "100.0"),
        ("vip", "0.0", "10.0"),
    }

    # A top-up, then a replay of the whole topic: no invoice and no credit moves.
    wallet_id = await kit.db.fetchval("SELECT id::text FROM wallets WHERE code = 'main'")
    await kit.db.execute("UPDATE wallets SET balance_cents = 700 WHERE id = $1::uuid", wallet_id)
    async with start_invoicer() as replay:
        await drained(replay, 4)
    assert await kit.db.fetchval("SELECT count(*) FROM invoices") == 3
    assert await _balances(kit) == [("main", 700, 10000), ("vip", 0, 2000)]
    assert (
        await kit.db.fetchval(
            "SELECT count(*) FROM wallet_transactions WHERE transaction_type = 'outbound'"
        )
        == 4
    )


async def test_a_draft_is_paid_by_credits_when_finalized_and_only_once(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    await call(
        lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0, applied_to_organization=True)
    )
    # A grace period long enough that February's invoice stays a draft.
    catalog = await kit.catalog(organization_id=org.id, grace_days=100_000)
    await call(lago.wallets.create, Wallet(external_customer_id=catalog.external_customer_id,
                                           code="main", rate_amount="2", currency="EUR",
                                           granted_credits="5"))  # fmt: skip
    await kit.publish(catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), []))
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        draft = await kit.db.fetchrow("SELECT * FROM invoices")
        # 1000 + 20 % = 1200, nothing prepaid yet: the wallet keeps its 5 x 2.00 = 1000.
        assert (draft["status"], draft["prepaid_credit_amount_cents"]) == ("draft", 0)
        assert draft["total_amount_cents"] == 1200
        assert await _balances(kit) == [("main", 1000, 0)]

        finalized = await call(lago.invoices.finalize, str(draft["id"]))
        assert finalized.status == "finalized"
        assert (finalized.prepaid_credit_amount_cents, finalized.total_amount_cents) == (1000, 200)
        assert finalized.prepaid_granted_credit_amount_cents == 1000
        again = await call(lago.invoices.finalize, str(draft["id"]))
        assert (again.prepaid_credit_amount_cents, again.total_amount_cents) == (1000, 200)
        await kit.db.execute("UPDATE wallets SET balance_cents = 5000")
        assert await invoicer.finalize_due_drafts(utc(2999, 1, 1)) == 0
    assert await _balances(kit) == [("main", 5000, 1000)]
    assert (
        await kit.db.fetchval(
            "SELECT count(*) FROM wallet_transactions WHERE transaction_type = 'outbound'"
        )
        == 1
    )


async def test_the_sweep_finalizes_due_drafts_with_their_credits(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    catalog = await kit.catalog(organization_id=org.id, grace_days=100_000)
    await call(lago.wallets.create, Wallet(external_customer_id=catalog.external_customer_id,
                                           code="main", rate_amount="1", currency="EUR",
                                           granted_credits="4"))  # fmt: skip
    await kit.publish(catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), []))
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(1)
        grace_until = await kit.db.fetchval("SELECT grace_until FROM invoices")
        assert await invoicer.finalize_due_drafts(grace_until) == 1
        assert await invoicer.finalize_due_drafts(grace_until) == 0
    row = await kit.db.fetchrow("SELECT * FROM invoices")
    # No taxes here: 1000 due, the wallet's 400 pay part of it.
    assert (row["status"], row["prepaid_credit_amount_cents"], row["total_amount_cents"]) == (
        "finalized",
        400,
        600,
    )
    assert await _balances(kit) == [("main", 0, 400)]
