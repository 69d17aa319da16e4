"""A subscription's usage alerts (`/api/v1/subscriptions/{external_id}/alerts`): created one
or several at once (all or none), read, changed, deleted, through Lago's client where it
has the call and raw HTTP elsewhere; every refusal names its field."""

from __future__ import annotations

from typing import Any

import aiohttp
from lago_python_client.models import BillableMetric, Customer, Plan, Subscription
from lago_python_client.models.alert import Alert, AlertsList, AlertThreshold, AlertThresholdList


def thresholds(*values: tuple[str, str, bool]) -> AlertThresholdList:
    return AlertThresholdList(
        __root__=[AlertThreshold(code=c, value=v, recurring=r) for c, v, r in values]
    )


async def test_alerts_of_a_subscription(tenant: Any, call: Any, server: Any, db: Any) -> None:
    lago = tenant.client
    await call(
        lago.billable_metrics.create,
        BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"),
    )
    plan = Plan(name="P", code="p", interval="monthly", amount_cents=0, amount_currency="EUR")
    await call(lago.plans.create, plan)
    await call(lago.customers.create, Customer(external_id="c1"))
    await call(
        lago.subscriptions.create,
        Subscription(external_customer_id="c1", plan_code="p", external_id="s1"),
    )

    made = await call(
        lago.subscriptions.create_alerts,
        "s1",
        AlertsList(
            alerts=[
                Alert(
                    alert_type="current_usage_amount",
                    code="spend",
                    name="Spend",
                    thresholds=thresholds(("warn", "500", False), ("step", "1000", True)),
                ),
                Alert(
                    alert_type="billable_metric_current_usage_units",
                    code="calls",
                    billable_metric_code="calls",
                    thresholds=thresholds(("many", "100", False)),
                ),
            ]
        ),
    )
    spend, calls = made["alerts"]
    assert (spend.code, spend.external_subscription_id, spend.previous_value) == (
        "spend",
        "s1",
        "0",
    )
    assert [(t.code, t.value, t.recurring) for t in spend.thresholds.__root__] == [
        ("warn", "500", False),
        ("step", "1000", True),
    ]
    assert calls.billable_metric.code == "calls" and spend.billable_metric is None

    url = f"{server.url}/api/v1/subscriptions/s1/alerts"
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def send(method: str, where: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, where, json=body) as response:
                return response.status, await response.json()

        one = {"alert_type": "current_usage_amount", "code": "x", "thresholds": [{"value": 5}]}
        status, created = await send("POST", url, {"alert": one})
        assert status == 200 and created["alert"]["thresholds"] == [
            {"code": None, "value": "5", "recurring": False}
        ]
        assert (await send("POST", url, {"alert": one}))[1]["error_details"] == {
            "code": ["value_already_exist"]
        }
        bad = [
            {**one, "code": "y"},
            {"alert_type": "billable_metric_current_usage_amount", "code": "z", "thresholds": []},
        ]
        status, refused = await send("POST", url, {"alerts": bad})
        assert status == 422 and refused["error_details"] == {
            "alerts.1.thresholds": ["value_is_invalid"],
            "alerts.1.billable_metric_code": ["value_is_mandatory"],
        }
        assert (await send("GET", f"{url}/y"))[1]["code"] == "alert_not_found", "all or none"
        metric_less = {**one, "code": "m", "billable_metric_code": "calls"}
        assert (await send("POST", url, {"alert": metric_less}))[1]["error_details"] == {
            "billable_metric_code": ["value_is_invalid"]
        }
        twice = {**one, "code": "t", "thresholds": [{"value": "1", "recurring": True}] * 2}
        assert (await send("POST", url, {"alert": twice}))[1]["error_details"] == {
            "thresholds": ["value_is_invalid"]
        }

        status, changed = await send(
            "PUT", f"{url}/x", {"alert": {"code": "x2", "thresholds": [{"value": "7.5"}]}}
        )
        assert status == 200 and (changed["alert"]["code"], changed["alert"]["name"]) == (
            "x2",
            None,
        )
        assert changed["alert"]["thresholds"][0]["value"] == "7.5"
        status, kept_type = await send("PUT", f"{url}/x2", {"alert": {"alert_type": "x"}})
        assert kept_type["error_details"] == {"alert_type": ["not_editable"]}
        listed = (await send("GET", url))[1]
        assert [a["code"] for a in listed["alerts"]] == ["spend", "calls", "x2"]
        assert (await send("DELETE", f"{url}/x2"))[1]["alert"]["code"] == "x2"
        missing = await send("GET", f"{server.url}/api/v1/subscriptions/nope/alerts")
        assert missing == (404, {**missing[1], "code": "subscription_not_found"})

    await call(lago.subscriptions.delete_alerts, "s1")
    assert await db.fetchval("SELECT count(*) FROM alerts WHERE deleted_at IS NULL") == 0
