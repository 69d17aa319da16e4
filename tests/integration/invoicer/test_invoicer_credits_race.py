"""Two subscriptions of one customer close at the same moment and are invoiced
concurrently: together they use the coupon and the wallet exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import AppliedCoupon, Coupon, Wallet

from gateway.organizations import create_organization
from meterflow.settings import Settings

from .conftest import call, drained


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_concurrent_invoices_of_a_customer_share_its_credits_once(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    catalog = await kit.catalog(organization_id=org.id)
    siblings = [catalog]
    for _ in range(5):  # five more subscriptions of the same customer on the same plan
        subscription = uuid.uuid4()
        await kit.db.execute(
            "INSERT INTO subscriptions (id, organization_id, external_id, customer_id, plan_id, "
            "billing_time, subscription_at, started_at, status) SELECT $1, organization_id, $2, "
            "customer_id, plan_id, billing_time, subscription_at, started_at, status "
            "FROM subscriptions WHERE id = $3::uuid",
            subscription,
            f"sub-{subscription.hex[:8]}",
            catalog.subscription_id,
        )
        siblings.append(
            replace(
                catalog,
                subscription_id=str(subscription),
                external_subscription_id=f"sub-{subscription.hex[:8]}",
            )
        )
    customer = catalog.external_customer_id
    await call(
        lago.coupons.create,
        Coupon(name="Welcome", code="welcome", coupon_type="fixed_amount", amount_cents=2500,
               amount_currency="EUR", frequency="once", expiration="no_expiration"),
    )  # fmt: skip
    await call(
        lago.applied_coupons.create,
        AppliedCoupon(external_customer_id=customer, coupon_code="welcome"),
    )
    await call(
        lago.wallets.create,
        Wallet(external_customer_id=customer, rate_amount="1", currency="EUR",
               granted_credits="7"),
    )  # fmt: skip
    # Six February invoices of 1000 each (no taxes), all closed at once.
    await kit.publish(*(s.closed(utc(2026, 2, 1), utc(2026, 3, 1), []) for s in siblings))
    async with start_invoicer() as invoicer:
        await kit.wait_for_invoices(6)
        await drained(invoicer, 6)
    rows = await kit.db.fetch(
        "SELECT coupons_amount_cents, prepaid_credit_amount_cents, total_amount_cents FROM invoices"
    )
    # The coupon's 2500 and the wallet's 700 are spent once in all: 6000 - 2500 - 700.
    assert sum(r["coupons_amount_cents"] for r in rows) == 2500
    assert sum(r["prepaid_credit_amount_cents"] for r in rows) == 700
    assert sum(r["total_amount_cents"] for r in rows) == 6000 - 2500 - 700
    assert await kit.db.fetchrow("SELECT status, amount_cents_remaining FROM applied_coupons") == (
        "terminated",
        0,
    )
    assert await kit.db.fetchrow("SELECT balance_cents, consumed_amount_cents FROM wallets") == (
        0,
        700,
    )
    uses = await kit.db.fetch(
        "SELECT amount_cents FROM wallet_transactions WHERE transaction_type = 'outbound'"
    )
    assert sum(r["amount_cents"] for r in uses) == 700
