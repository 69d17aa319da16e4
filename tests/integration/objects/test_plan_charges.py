"""A plan's charges one at a time (`/api/v1/plans/{code}/charges[/{charge_code}]`): each is a
plan update (validated, versioned), errors name `charge.<field>`, a charge without a code is
reached by its lago_id."""

from __future__ import annotations

from typing import Any

import aiohttp
from lago_python_client.models import BillableMetric, Plan


async def test_charges_are_added_changed_and_removed_one_at_a_time(
    tenant: Any, call: Any, server: Any, db: Any
) -> None:
    lago = tenant.client
    metric = await call(
        lago.billable_metrics.create,
        BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"),
    )
    plan = Plan(name="Pro", code="pro", interval="monthly", amount_cents=0, amount_currency="EUR")
    await call(lago.plans.create, plan)
    version = await db.fetchval("SELECT version FROM plans WHERE code = 'pro'")
    charges = f"{server.url}/api/v1/plans/pro/charges"
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    standard = {"billable_metric_id": metric.lago_id, "charge_model": "standard"}

    async with aiohttp.ClientSession(headers=headers) as http:

        async def send(method: str, url: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, url, json=body) as response:
                return response.status, await response.json()

        status, bad = await send("POST", charges, {"charge": {**standard, "properties": {}}})
        assert status == 422 and list(bad["error_details"]) == ["charge.properties.amount"]
        unknown = {**standard, "billable_metric_id": "00000000-0000-0000-0000-000000000000"}
        status, missing = await send("POST", charges, {"charge": unknown})
        assert (status, missing["code"]) == (404, "billable_metric_not_found")

        status, added = await send(
            "POST", charges, {"charge": {**standard, "properties": {"amount": "2"}}}
        )
        assert status == 200 and added["charge"]["code"] is None
        lago_id = added["charge"]["lago_id"]
        status, changed = await send(
            "PUT", f"{charges}/{lago_id}", {"charge": {"code": "c1", "properties": {"amount": "3"}}}
        )
        assert status == 200
        assert (changed["charge"]["lago_id"], changed["charge"]["code"]) == (lago_id, "c1")
        assert changed["charge"]["properties"] == {"amount": "3"}
        status, listed = await send("GET", charges + "?per_page=1")
        assert [c["code"] for c in listed["charges"]] == ["c1"]
        assert listed["meta"]["total_count"] == 1
        # Two writes, two plan versions: the catalog topic carries each.
        assert await db.fetchval("SELECT version FROM plans WHERE code = 'pro'") == version + 2

        status, removed = await send("DELETE", f"{charges}/c1")
        assert (status, removed["charge"]["lago_id"]) == (200, lago_id)
        assert (await send("GET", f"{charges}/c1"))[1]["code"] == "charge_not_found"
        assert (await send("GET", charges))[1]["charges"] == []
        status, no_plan = await send("GET", f"{server.url}/api/v1/plans/nope/charges")
        assert (status, no_plan["code"]) == (404, "plan_not_found")
