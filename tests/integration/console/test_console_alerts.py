"""A usage alert added from the customer's Actions menu over HTTP: thresholds typed in the
plan's currency become cents, a units alert keeps its units, every refusal is said beside
its field, and the alert is the API's (read back through it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.service import IngestServer
from support.console import Operator, call_api, csrf_of, sign_in


async def test_a_usage_alert_from_the_actions_menu(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    key, base = operator.api_key, console_server.url
    metric = {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}
    await call_api(base, key, "POST", "billable_metrics", {"billable_metric": metric})
    plan = {"name": "P", "code": "p", "interval": "monthly", "amount_cents": 0}
    await call_api(base, key, "POST", "plans", {"plan": {**plan, "amount_currency": "EUR"}})
    subscription = {"external_customer_id": "c1", "plan_code": "p", "external_id": "s1"}
    await call_api(base, key, "POST", "subscriptions", {"subscription": subscription})
    await sign_in(http, base, operator)
    async with http.get(f"{base}/console/customers?q=c1") as page:
        found = re.search(r'href="(/console/customers/[0-9a-f-]{36})"', await page.text())
    assert found is not None
    form_url = f"{base}{found.group(1)}/alerts/new"
    async with http.get(form_url) as page:
        html = await page.text()
    assert '<option value="s1">' in html and '<option value="calls">' in html
    token = csrf_of(html)

    entered = {
        "csrf_token": token,
        "external_subscription_id": "s1",
        "alert_type": "current_usage_amount",
        "code": "spend",
        "thresholds": "50.00, 100.001",
    }
    async with http.post(form_url, data=entered) as response:
        assert response.status == 422
        assert 'id="thresholds-error">Not a valid value.' in await response.text()
    no_metric = {**entered, "alert_type": "billable_metric_current_usage_units", "code": "u"}
    async with http.post(form_url, data=no_metric) as response:
        assert 'id="billable_metric_code-error">Required.' in await response.text()

    entered["thresholds"], entered["recurring"] = "50.00, 100", "25"
    async with http.post(form_url, data=entered) as response:
        assert response.url.path.endswith("/usage")
    units = {**no_metric, "billable_metric_code": "calls", "thresholds": "1000.5"}
    async with http.post(form_url, data=units) as response:
        assert response.url.path.endswith("/usage")

    made = await call_api(base, key, "GET", "subscriptions/s1/alerts")
    assert [(a["code"], [t["value"] for t in a["thresholds"]]) for a in made["alerts"]] == [
        ("spend", ["2500", "5000", "10000"]),
        ("u", ["1000.5"]),
    ]
    assert [t["recurring"] for t in made["alerts"][0]["thresholds"]] == [True, False, False]
