"""`GET /api/v1/customers/{id}/current_usage` checks ownership in Postgres before it asks the
aggregator, and says so in Lago's error shape when it cannot answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Plan, Subscription

Call = Callable[..., Any]


async def _error(call: Call, fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    with pytest.raises(LagoApiError) as caught:
        await call(fn, *args)
    return caught.value.status_code, caught.value.response


async def test_current_usage_errors(tenant: Any, call: Call) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="alice"))
    await call(lago.customers.create, Customer(external_id="bob"))
    await call(
        lago.plans.create,
        Plan(
            name="Basic", code="basic", interval="monthly", amount_cents=100, amount_currency="EUR"
        ),
    )
    await call(
        lago.subscriptions.create,
        Subscription(external_customer_id="alice", plan_code="basic", external_id="sub-a"),
    )

    status, body = await _error(call, lago.customers.current_usage, "nobody", "sub-a")
    assert (status, body["code"]) == (404, "customer_not_found")
    status, body = await _error(call, lago.customers.current_usage, "bob", "sub-a")
    assert (status, body["code"]) == (404, "subscription_not_found"), "sub-a is alice's"
    status, body = await _error(call, lago.customers.current_usage, "alice", "sub-x")
    assert (status, body["code"]) == (404, "subscription_not_found")
    # No aggregator runs on this test's topics, so none knows sub-a: a 503 that says so.
    status, body = await _error(call, lago.customers.current_usage, "alice", "sub-a")
    assert status == 503
    assert body == {
        "status": 503,
        "error": "Service Unavailable",
        "code": "aggregator_unavailable",
        "error_details": {},
    }
