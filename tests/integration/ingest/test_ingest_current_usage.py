"""`GET /api/v1/customers/{id}/current_usage` checks ownership in Postgres before it asks the
aggregator, and says so in Lago's error shape when it cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Plan, Subscription

from gateway.organizations import create_organization
from gateway.service import IngestServer
from meterflow.settings import Settings
from support.services import free_port

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
    await call(lago.customers.destroy, "bob")
    status, body = await _error(call, lago.customers.current_usage, "bob", "sub-a")
    assert (status, body["code"]) == (404, "customer_not_found"), "bob is deleted"
    # No aggregator runs on this test's topics, so none knows sub-a: a 503 that says so.
    status, body = await _error(call, lago.customers.current_usage, "alice", "sub-a")
    assert status == 503
    assert body == {
        "status": 503,
        "error": "Service Unavailable",
        "code": "aggregator_unavailable",
        "error_details": {},
    }


@pytest.mark.parametrize(
    ("answer", "want"),
    [
        # A worker whose usage view failed (the real worker's side is
        # tests/integration/aggregator/test_aggregator_usage_failure.py): not "unavailable".
        (
            {"status": 500, "error": "Internal Server Error", "code": "usage_failed"},
            {"status": 500, "error": "Internal Server Error", "code": "usage_failed"},
        ),
        # A worker whose partition's owner is down (the real workers' side is
        # tests/integration/aggregator/test_aggregator_failover.py): retry shortly.
        (
            {"status": 503, "error": "Service Unavailable", "code": "owner_unavailable"},
            {"status": 503, "error": "Service Unavailable", "code": "aggregator_unavailable"},
        ),
    ],
)
async def test_what_the_workers_answer_is_told_apart(
    settings: Settings,
    ingest_config: Callable[..., Any],
    answer: dict[str, Any],
    want: dict[str, Any],
) -> None:
    # Two workers named (METERFLOW_AGGREGATOR_URL): the first down, the second a stand-in
    # answering `answer`.
    async def failed(request: web.Request) -> web.Response:
        return web.json_response({**answer, "error_details": {}}, status=answer["status"])

    aggregator = web.Application()
    aggregator.router.add_get("/current-usage/{external_subscription_id}", failed)
    runner = web.AppRunner(aggregator)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        down = f"http://127.0.0.1:{free_port()}"
        config = ingest_config(aggregator_urls=(down, f"http://127.0.0.1:{port}"))
        async with IngestServer(settings, config) as server:
            _, key = await create_organization(settings, "Acme", "UTC")
            lago = Client(api_key=key, api_url=server.url)
            await asyncio.to_thread(lago.customers.create, Customer(external_id="alice"))
            await asyncio.to_thread(
                lago.plans.create,
                Plan(
                    name="Basic",
                    code="basic",
                    interval="monthly",
                    amount_cents=100,
                    amount_currency="EUR",
                ),
            )
            await asyncio.to_thread(
                lago.subscriptions.create,
                Subscription(external_customer_id="alice", plan_code="basic", external_id="s"),
            )
            with pytest.raises(LagoApiError) as caught:
                await asyncio.to_thread(lago.customers.current_usage, "alice", "s")
    finally:
        await runner.cleanup()
    assert caught.value.status_code == want["status"]
    assert caught.value.response == {**want, "error_details": {}}
