"""`/api/v1/wallets` and `/api/v1/wallet_transactions` through Lago's own client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Wallet, WalletTransaction

Call = Callable[..., Any]


async def test_wallet_create_top_up_update_terminate(tenant: Any, call: Call, db: Any) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c1", currency="EUR"))
    wallet = await call(
        lago.wallets.create,
        Wallet(
            external_customer_id="c1",
            name="Prepaid",
            code="main",
            rate_amount="1.5",
            currency="EUR",
            paid_credits="20",
            granted_credits="10",
        ),
    )
    # 30 credits at 1.50 EUR each: 45.00 EUR.
    assert (wallet.status, wallet.credits_balance, wallet.balance_cents) == ("active", "30.0", 4500)
    assert (wallet.rate_amount, wallet.consumed_credits, wallet.priority) == ("1.5", "0.0", 50)
    assert wallet.ongoing_balance_cents == 4500

    made = await call(
        lago.wallet_transactions.create,
        WalletTransaction(wallet_id=wallet.lago_id, paid_credits="2.5", granted_credits="1"),
    )
    transactions = made["wallet_transactions"]
    assert [(t.transaction_status, t.status, t.credit_amount, t.amount) for t in transactions] == [
        ("purchased", "settled", "2.5", "3.75"),
        ("granted", "settled", "1.0", "1.5"),
    ]
    # 4500 + 375 + 150 = 5025 cents, 33.5 credits.
    found = await call(lago.wallets.find, wallet.lago_id)
    assert (found.balance_cents, found.credits_balance) == (5025, "33.5")

    voided = await call(
        lago.wallet_transactions.create,
        WalletTransaction(wallet_id=wallet.lago_id, voided_credits="3.5"),
    )
    assert voided["wallet_transactions"][0].transaction_type == "outbound"
    assert (await call(lago.wallets.find, wallet.lago_id)).credits_balance == "30.0"
    # Granted: 10 + 1 credits = 1650 cents; voided credits leave the granted part first
    # (3.5 credits = 525): 1125 granted of the 4500 balance.
    assert (
        await db.fetchval(
            "SELECT granted_balance_cents FROM wallets WHERE id = $1::uuid", wallet.lago_id
        )
        == 1125
    )
    with pytest.raises(LagoApiError) as too_much:
        await call(
            lago.wallet_transactions.create,
            WalletTransaction(wallet_id=wallet.lago_id, voided_credits="31"),
        )
    assert too_much.value.status_code == 422
    assert too_much.value.response["error_details"] == {"voided_credits": ["insufficient_credits"]}

    listed = await call(lago.wallet_transactions.find_all, wallet.lago_id)
    assert listed["meta"]["total_count"] == 5
    granted = await call(
        lago.wallet_transactions.find_all, wallet.lago_id, {"transaction_status": "granted"}
    )
    assert granted["meta"]["total_count"] == 2

    updated = await call(lago.wallets.update, Wallet(name="Credits", priority=3), wallet.lago_id)
    assert (updated.name, updated.priority, updated.code) == ("Credits", 3, "main")
    wallets = await call(lago.wallets.find_all, {"external_customer_id": "c1"})
    assert [w.lago_id for w in wallets["wallets"]] == [wallet.lago_id]

    ended = await call(lago.wallets.destroy, wallet.lago_id)
    assert ended.status == "terminated" and ended.terminated_at is not None
    with pytest.raises(LagoApiError) as closed:
        await call(
            lago.wallet_transactions.create,
            WalletTransaction(wallet_id=wallet.lago_id, granted_credits="1"),
        )
    assert closed.value.status_code == 404


async def test_wallet_inputs_and_customer_paths(tenant: Any, call: Call, server: Any) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c1", currency="EUR"))
    for wallet, status, details in [
        (Wallet(external_customer_id="c1", rate_amount="1", currency="USD"), 422,
         {"currency": ["currencies_does_not_match"]}),
        (Wallet(external_customer_id="c1", rate_amount="0", currency="EUR"), 422,
         {"rate_amount": ["value_is_invalid"]}),
        (Wallet(external_customer_id="nobody", rate_amount="1", currency="EUR"), 404, None),
    ]:  # fmt: skip
        with pytest.raises(LagoApiError) as refused:
            await call(lago.wallets.create, wallet)
        assert refused.value.status_code == status
        if details is not None:
            assert refused.value.response["error_details"] == details

    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    base = server.url + "/api/v1/customers/c1/wallets"
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {
            "wallet": {"rate_amount": "2", "currency": "EUR", "code": "w", "granted_credits": "5"}
        }
        async with http.post(base, json=body) as response:
            assert response.status == 200
            created = (await response.json())["wallet"]
        assert (created["balance_cents"], created["external_customer_id"]) == (1000, "c1")
        async with http.post(base, json=body) as response:
            assert response.status == 422
            assert (await response.json())["error_details"] == {"code": ["value_already_exist"]}
        async with http.get(base + "/w") as response:
            assert (await response.json())["wallet"]["lago_id"] == created["lago_id"]
        async with http.get(base) as response:
            assert (await response.json())["meta"]["total_count"] == 1
        async with http.put(base + "/w", json={"wallet": {"rate_amount": "3"}}) as response:
            assert response.status == 422
            assert (await response.json())["error_details"] == {"rate_amount": ["not_editable"]}
        async with http.delete(base + "/w") as response:
            assert (await response.json())["wallet"]["status"] == "terminated"
        async with http.get(server.url + "/api/v1/wallets/not-a-uuid") as response:
            assert (response.status, (await response.json())["code"]) == (404, "wallet_not_found")
