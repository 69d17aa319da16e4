"""The benchmarks' scratch catalog made through meterflow's public API, as a user would make
it, and the checks of its answers (`bench.freshness`, `bench.usage_api`, the aggregator's
end-to-end measures)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from bench.workload import CHARGES, WrongTotals, current_period_start

CUSTOMER = "bench-customer"
PLAN = "bench-plan"


async def expect_ok(response: aiohttp.ClientResponse, what: str) -> bytes:
    body = await response.read()
    if response.status != 200:
        raise WrongTotals(f"{what} answered {response.status}: {body[:300]!r}")
    return body


async def api(session: aiohttp.ClientSession, url: str, path: str, wrapper: str, body: Any) -> Any:
    async with session.post(url + path, json={wrapper: body}) as response:
        found = orjson.loads(await expect_ok(response, f"POST {path}"))
    return found[wrapper]


async def create_catalog(
    session: aiohttp.ClientSession, url: str, subscriptions: list[str]
) -> None:
    """Through the public API, as a user would: metrics, plan, customer, subscriptions."""
    ids = {}
    for charge in CHARGES:
        metric = await api(
            session,
            url,
            "/api/v1/billable_metrics",
            "billable_metric",
            {
                "name": charge.code,
                "code": charge.code,
                "aggregation_type": charge.aggregation_type,
                "field_name": charge.field_name,
            },
        )
        ids[charge.code] = metric["lago_id"]
    plan = {
        "name": PLAN,
        "code": PLAN,
        "interval": "monthly",
        "amount_cents": 0,
        "amount_currency": "USD",
        "pay_in_advance": False,
        "charges": [
            {"billable_metric_id": i, "charge_model": "standard", "properties": {"amount": "0.01"}}
            for i in ids.values()
        ],
    }
    await api(session, url, "/api/v1/plans", "plan", plan)
    customer = {"external_id": CUSTOMER, "name": "Bench", "currency": "USD"}
    await api(session, url, "/api/v1/customers", "customer", customer)
    for subscription in subscriptions:
        body = {
            "external_customer_id": CUSTOMER,
            "plan_code": PLAN,
            "external_id": subscription,
            "billing_time": "calendar",
            "subscription_at": current_period_start().isoformat(),
        }
        await api(session, url, "/api/v1/subscriptions", "subscription", body)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise WrongTotals(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.2)
