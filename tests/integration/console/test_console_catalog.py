"""The catalog pages (plans, billable metrics, coupons, add-ons) over HTTP: empty, each says
how to create the first object through the API; filled, each lists the API's objects with
their figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.service import IngestServer
from support.console import Operator, call_api, sign_in

PAGES = ("plans", "metrics", "coupons", "add_ons")


async def _pages(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    texts = {}
    for page in PAGES:
        async with http.get(f"{base}/console/{page}") as response:
            assert response.status == 200, page
            texts[page] = await response.text()
    return texts


async def test_the_catalog_pages_list_what_the_api_created(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    base, key = console_server.url, operator.api_key
    await sign_in(http, base, operator)
    empty = await _pages(http, base)
    assert "No plan yet" in empty["plans"] and "POST /api/v1/plans" in empty["plans"]
    assert "No billable metric yet" in empty["metrics"]
    assert "POST /api/v1/billable_metrics" in empty["metrics"]
    assert "No coupon yet" in empty["coupons"] and "POST /api/v1/coupons" in empty["coupons"]
    assert "No add-on yet" in empty["add_ons"] and "POST /api/v1/add_ons" in empty["add_ons"]

    metric = {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}
    made = await call_api(base, key, "POST", "billable_metrics", {"billable_metric": metric})
    charge = {"billable_metric_id": made["billable_metric"]["lago_id"], "charge_model": "standard"}
    charge |= {"properties": {"amount": "0.5"}}
    plan = {"name": "Basic", "code": "basic", "interval": "monthly", "amount_cents": 1500}
    plan |= {"amount_currency": "EUR", "charges": [charge]}
    await call_api(base, key, "POST", "plans", {"plan": plan})
    coupon = {"name": "Welcome", "code": "welcome", "coupon_type": "fixed_amount"}
    coupon |= {"amount_cents": 2500, "amount_currency": "EUR", "frequency": "once"}
    await call_api(
        base, key, "POST", "coupons", {"coupon": coupon | {"expiration": "no_expiration"}}
    )
    add_on = {"name": "Setup", "code": "setup", "amount_cents": 10000, "amount_currency": "EUR"}
    await call_api(base, key, "POST", "add_ons", {"add_on": add_on | {"description": "Once"}})

    listed = await _pages(http, base)
    assert "1 plan." in listed["plans"] and "Basic" in listed["plans"]
    assert "15.00 EUR" in listed["plans"] and "<code>calls</code> standard" in listed["plans"]
    assert "1 billable metric." in listed["metrics"] and "count_agg" in listed["metrics"]
    assert "1 coupon." in listed["coupons"] and "25.00 EUR" in listed["coupons"]
    assert "never" in listed["coupons"] and "Welcome" in listed["coupons"]
    assert '<span class="status active">active</span>' in listed["coupons"]
    assert "1 add-on." in listed["add_ons"] and "100.00 EUR" in listed["add_ons"]
    assert "Once" in listed["add_ons"]
