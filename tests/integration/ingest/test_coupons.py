"""`/api/v1/coupons` and `/api/v1/applied_coupons` through Lago's own client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AppliedCoupon, Coupon, Customer, Wallet

Call = Callable[..., Any]


def fixed(code: str, cents: int = 5000, **extra: Any) -> Coupon:
    return Coupon(
        name=code.title(),
        code=code,
        coupon_type="fixed_amount",
        amount_cents=cents,
        amount_currency="EUR",
        frequency=extra.pop("frequency", "once"),
        expiration=extra.pop("expiration", "no_expiration"),
        **extra,
    )


async def test_coupon_create_find_update_list_delete(tenant: Any, call: Call) -> None:
    lago = tenant.client
    created = await call(lago.coupons.create, fixed("welcome"))
    assert (created.coupon_type, created.amount_cents, created.amount_currency) == (
        "fixed_amount",
        5000,
        "EUR",
    )
    assert (created.frequency, created.expiration, created.reusable) == (
        "once",
        "no_expiration",
        True,
    )
    assert created.percentage_rate is None and created.terminated_at is None
    percent = await call(
        lago.coupons.create,
        Coupon(
            name="Ten",
            code="ten",
            coupon_type="percentage",
            percentage_rate=10.0,
            frequency="recurring",
            frequency_duration=3,
            expiration="time_limit",
            expiration_at="2999-01-01T00:00:00Z",
        ),
    )
    assert (percent.percentage_rate, percent.frequency_duration) == (10.0, 3)
    assert percent.expiration_at == "2999-01-01T00:00:00Z"

    updated = await call(lago.coupons.update, Coupon(amount_cents=7000), "welcome")
    assert updated.amount_cents == 7000, "a coupon applied to nobody changes freely"
    found = await call(lago.coupons.find, "welcome")
    assert found.lago_id == created.lago_id
    listed = await call(lago.coupons.find_all, {"per_page": 1})
    assert listed["meta"]["total_count"] == 2

    await call(lago.customers.create, Customer(external_id="c1", currency="EUR"))
    await call(
        lago.applied_coupons.create, AppliedCoupon(external_customer_id="c1", coupon_code="welcome")
    )
    kept = await call(lago.coupons.update, Coupon(amount_cents=1, name="Hello"), "welcome")
    assert (kept.amount_cents, kept.name) == (7000, "Hello"), "applied: only the name changes"

    deleted = await call(lago.coupons.destroy, "welcome")
    assert deleted.terminated_at is not None
    with pytest.raises(LagoApiError) as missing:
        await call(lago.coupons.find, "welcome")
    assert missing.value.status_code == 404
    applied = await call(lago.applied_coupons.find_all, {"external_customer_id": "c1"})
    assert [a.status for a in applied["applied_coupons"]] == ["terminated"]


async def test_apply_list_and_remove_applied_coupons(tenant: Any, call: Call, server: Any) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c1", currency="EUR"))
    await call(lago.customers.create, Customer(external_id="usd", currency="USD"))
    await call(lago.coupons.create, fixed("once", 3000, reusable=False))
    await call(
        lago.coupons.create, fixed("monthly", 500, frequency="recurring", frequency_duration=2)
    )

    first = await call(
        lago.applied_coupons.create, AppliedCoupon(external_customer_id="c1", coupon_code="once")
    )
    assert (first.status, first.amount_cents, first.amount_cents_remaining) == (
        "active",
        3000,
        3000,
    )
    assert first.external_customer_id == "c1"
    override = await call(
        lago.applied_coupons.create,
        AppliedCoupon(
            external_customer_id="c1", coupon_code="monthly", amount_cents=800, frequency_duration=6
        ),
    )
    assert (override.amount_cents, override.frequency_duration) == (800, 6)
    assert override.frequency_duration_remaining == 6

    for body, status, details in [
        (AppliedCoupon(external_customer_id="c1", coupon_code="once"), 422,
         {"coupon": ["coupon_is_not_reusable"]}),
        (AppliedCoupon(external_customer_id="usd", coupon_code="monthly"), 422,
         {"currency": ["currencies_does_not_match"]}),
        (AppliedCoupon(external_customer_id="nobody", coupon_code="once"), 404, None),
        (AppliedCoupon(external_customer_id="c1", coupon_code="nope"), 404, None),
    ]:  # fmt: skip
        with pytest.raises(LagoApiError) as refused:
            await call(lago.applied_coupons.create, body)
        assert refused.value.status_code == status
        if details is not None:
            assert refused.value.response["error_details"] == details

    everything = await call(lago.applied_coupons.find_all)
    assert everything["meta"]["total_count"] == 2
    only = await call(lago.applied_coupons.find_all, {"coupon_code[]": "monthly"})
    assert [a.coupon_code for a in only["applied_coupons"]] == ["monthly"]
    # lago-python-client 1.55's customer_applied_coupons sends no API key: ask directly.
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(server.url + "/api/v1/customers/c1/applied_coupons") as response:
            mine = await response.json()
        async with http.get(server.url + "/api/v1/customers/nobody/applied_coupons") as response:
            assert response.status == 404
    assert mine["meta"]["total_count"] == 2

    removed = await call(lago.applied_coupons.destroy, "c1", first.lago_id)
    assert (removed.status, removed.lago_id) == ("terminated", first.lago_id)
    with pytest.raises(LagoApiError) as still_used:
        await call(
            lago.applied_coupons.create,
            AppliedCoupon(external_customer_id="c1", coupon_code="once"),
        )
    assert still_used.value.status_code == 422, "not reusable, even once the first has ended"
    active = await call(lago.applied_coupons.find_all, {"status": "active"})
    assert [a.coupon_code for a in active["applied_coupons"]] == ["monthly"]
    with pytest.raises(LagoApiError) as gone:
        await call(lago.applied_coupons.destroy, "usd", override.lago_id)
    assert gone.value.status_code == 404


async def test_coupon_inputs_are_checked(tenant: Any, server: Any) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def post(coupon: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(server.url + "/api/v1/coupons", json={"coupon": coupon}) as r:
                return r.status, await r.json()

        base = {"name": "X", "code": "x", "frequency": "once", "expiration": "no_expiration"}
        status, body = await post({**base, "coupon_type": "fixed_amount"})
        assert status == 422
        assert body["error_details"] == {
            "amount_cents": ["value_is_mandatory"],
            "amount_currency": ["value_is_mandatory"],
        }
        status, body = await post(
            {
                **base,
                "coupon_type": "percentage",
                "percentage_rate": "120",
                "frequency": "recurring",
            }
        )
        assert body["error_details"] == {
            "percentage_rate": ["value_is_invalid"],
            "frequency_duration": ["value_is_mandatory"],
        }
        status, body = await post(
            {**base, "coupon_type": "percentage", "percentage_rate": "5",
             "expiration": "time_limit", "expiration_at": "2001-01-01T00:00:00Z"}
        )  # fmt: skip
        assert body["error_details"] == {"expiration_at": ["invalid_date"]}
        status, body = await post(
            {**base, "coupon_type": "percentage", "percentage_rate": "5",
             "applies_to": {"plan_codes": ["p"]}}
        )  # fmt: skip
        assert body["error_details"] == {"applies_to": ["not_supported"]}
        status, body = await post({**base, "coupon_type": "percentage", "percentage_rate": "12.5"})
        assert status == 200 and body["coupon"]["percentage_rate"] == "12.5"
        status, body = await post({**base, "coupon_type": "percentage", "percentage_rate": "5"})
        assert (status, body["error_details"]) == (422, {"code": ["value_already_exist"]})
        # An update that names a field a coupon cannot be without, as null, is refused (it
        # once reached the database as a NOT NULL violation: a 500).
        async with http.put(
            server.url + "/api/v1/coupons/x",
            json={"coupon": {"expiration": None, "name": None, "frequency": None}},
        ) as r:
            assert r.status == 422
            assert (await r.json())["error_details"] == {
                "name": ["value_is_mandatory"],
                "frequency": ["value_is_mandatory"],
                "expiration": ["value_is_mandatory"],
            }
        async with http.put(
            server.url + "/api/v1/coupons/x", json={"coupon": {"expiration_at": None}}
        ) as r:
            assert r.status == 200, "a nullable field may be set to null"


async def test_deleting_a_customer_ends_its_coupons_and_wallets(
    tenant: Any, call: Call, db: Any
) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="gone", currency="EUR"))
    await call(lago.coupons.create, fixed("bye"))
    applied = await call(
        lago.applied_coupons.create, AppliedCoupon(external_customer_id="gone", coupon_code="bye")
    )
    wallet = await call(
        lago.wallets.create,
        Wallet(external_customer_id="gone", rate_amount="1", currency="EUR", granted_credits="5"),
    )
    await call(lago.customers.destroy, "gone")
    found = await call(lago.wallets.find, wallet.lago_id)
    assert found.status == "terminated"
    listed = await call(lago.applied_coupons.find_all, {"status": "terminated"})
    assert [a.lago_id for a in listed["applied_coupons"]] == []  # the customer is gone
    status = await db.fetchval(
        "SELECT status FROM applied_coupons WHERE id = $1::uuid", applied.lago_id
    )
    assert status == "terminated"
