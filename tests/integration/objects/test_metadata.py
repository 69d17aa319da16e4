"""The `metadata` sub-resources of plans and wallets (replace, merge, delete all, delete a key)
through Lago's own client: what the body of the object shows after, what is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Plan, Wallet

Call = Callable[..., Any]


async def refused(call: Call, *args: Any) -> tuple[int, Any]:
    with pytest.raises(LagoApiError) as exc:
        await call(*args)
    return exc.value.status_code, exc.value.response.get("error_details") or exc.value.response


async def test_plan_metadata_is_replaced_merged_and_deleted(
    tenant: Any, call: Call, db: Any
) -> None:
    plans = tenant.client.plans
    plan = Plan(
        name="Start", code="start", interval="monthly", amount_cents=100, amount_currency="EUR"
    )
    await call(plans.create, plan)
    version = await db.fetchval("SELECT version FROM plans WHERE code = 'start'")

    assert await call(plans.replace_metadata, "start", {"a": "1", "b": None}) == {
        "a": "1",
        "b": None,
    }
    assert await call(plans.merge_metadata, "start", {"a": "2", "c": "3"}) == {
        "a": "2",
        "b": None,
        "c": "3",
    }
    assert await call(plans.delete_metadata_key, "start", "b") == {"a": "2", "c": "3"}
    assert (await call(plans.find, "start")).metadata == {"a": "2", "c": "3"}
    # Each change is a plan update: versioned, so the catalog topic carries it.
    assert await db.fetchval("SELECT version FROM plans WHERE code = 'start'") == version + 3

    assert await refused(call, plans.delete_metadata_key, "start", "b") == (
        422,
        {"key": ["metadata_key_not_found"]},
    )
    assert await refused(call, plans.merge_metadata, "start", {"n": 5}) == (
        422,
        {"metadata": ["value_is_invalid"]},
    )
    assert (await refused(call, plans.replace_metadata, "nope", {"a": "1"}))[0] == 404
    assert await call(plans.delete_all_metadata, "start") is None
    assert (await call(plans.find, "start")).metadata is None


async def test_wallet_metadata_by_id_and_by_customer_and_code(tenant: Any, call: Call) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c1", currency="EUR"))
    wallet = await call(
        lago.wallets.create,
        Wallet(
            external_customer_id="c1",
            name="Prepaid",
            code="main",
            rate_amount="1",
            currency="EUR",
            metadata={"po": "7"},
        ),
    )
    assert await call(lago.wallets.merge_metadata, wallet.lago_id, {"team": "ops"}) == {
        "po": "7",
        "team": "ops",
    }
    by_code = lago.customers.wallets.metadata
    assert await call(by_code.replace, "c1", "main", {"po": "8"}) == {"po": "8"}
    assert await call(by_code.delete_key, "c1", "main", "po") == {}
    assert (await call(lago.wallets.find, wallet.lago_id)).metadata == {}
    assert await call(lago.wallets.replace_metadata, wallet.lago_id, {"x": None}) == {"x": None}
    assert await call(by_code.delete_all, "c1", "main") is None

    assert (await refused(call, by_code.merge, "c1", "other", {"a": "1"}))[0] == 404
    assert (await refused(call, by_code.merge, "c2", "main", {"a": "1"}))[0] == 404
    await call(lago.wallets.destroy, wallet.lago_id)
    assert await refused(call, lago.wallets.merge_metadata, wallet.lago_id, {"a": "1"}) == (
        422,
        {"wallet": ["wallet_not_active"]},
    )
