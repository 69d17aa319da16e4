"""The console in a real headless Chromium, against running services (ingest, which serves
the console, the aggregator, and the webhooks service checking usage alerts) on the real
Kafka and Postgres: sign in, add a customer with a timezone, assign a plan, watch the Usage
tab follow events sent through the API without a reload (a usage alert's threshold crossed
included), read a date in three timezones, edit the timezone, see the external ID locked;
another organization's user gets 404, and a form without its CSRF token is refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from meterflow.settings import Settings
from support.console import Operator, call_api, chromium, make_operator, sign_in_page
from support.services import running_services

SEEN = 30_000  # ms a browser expectation may wait (the aggregator learns the plan first)


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """ingest (API and console), the aggregator and the webhooks service (which checks usage
    alerts) on this test's topics and schema."""
    with running_services(
        settings,
        tmp_path,
        ("ingest", "aggregator", "webhooks"),
        METERFLOW_CONSOLE_USAGE_INTERVAL="0.3",
        METERFLOW_ALERTS_INTERVAL="0.3",
    ) as ports:
        yield f"http://127.0.0.1:{ports['api']}"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def _catalog(base: str, operator: Operator) -> None:
    """A count metric and a plan charging 0.05 USD per call, through the API."""
    metric = await call_api(
        base,
        operator.api_key,
        "POST",
        "billable_metrics",
        {
            "billable_metric": {
                "name": "API calls",
                "code": "api_calls",
                "aggregation_type": "count_agg",
            }
        },
    )
    metric_id = metric["billable_metric"]["lago_id"]
    await call_api(
        base,
        operator.api_key,
        "POST",
        "plans",
        {
            "plan": {
                "name": "Team",
                "code": "team",
                "interval": "monthly",
                "amount_cents": 1000,
                "amount_currency": "USD",
                "charges": [
                    {
                        "billable_metric_id": metric_id,
                        "charge_model": "standard",
                        "properties": {"amount": "0.05"},
                    }
                ],
            }
        },
    )


async def _send_calls(base: str, key: str, first: int, count: int) -> None:
    events = [
        {
            "transaction_id": f"call-{i}",
            "external_subscription_id": "sub-kolkata",
            "code": "api_calls",
        }
        for i in range(first, first + count)
    ]
    await call_api(base, key, "POST", "events/batch", {"events": events})


async def _add_customer(page: Page) -> str:
    await page.get_by_role("link", name="Add a customer").first.click()
    await page.get_by_label("Name", exact=True).fill("Kolkata Traders")
    await page.get_by_label("External ID").fill("cust-kolkata")
    await page.get_by_label("Timezone").fill("Asia/Kolkata")
    await page.get_by_label("Currency").select_option("USD")
    await page.get_by_label("Email").fill("billing@kolkata.test")
    await page.get_by_role("button", name="Create customer").click()
    await expect(page.get_by_role("heading", name="Kolkata Traders")).to_be_visible()
    await expect(page.locator("#customer-timezone")).to_have_text("Asia/Kolkata")
    return page.url


async def _assign_plan(page: Page) -> None:
    await page.get_by_text("Actions").click()
    await page.locator("details.menu").get_by_role("link", name="Assign a plan").click()
    await page.get_by_label("Plan").select_option("team")
    await page.get_by_label("Subscription external ID").fill("sub-kolkata")
    await page.get_by_label("Subscription name").fill("Kolkata Team")
    await page.get_by_role("button", name="Assign plan").click()
    row = page.get_by_role("row").filter(has_text="sub-kolkata")
    await expect(row).to_contain_text("active")


async def test_an_operator_runs_a_customer_from_the_browser(
    settings: Settings, services: str, browser: Browser
) -> None:
    operator = await make_operator(settings, "Acme", "Europe/Paris")
    await _catalog(services, operator)
    page = await sign_in_page(browser, services, operator)
    customer_url = await _add_customer(page)

    await page.goto(f"{customer_url}/edit")
    external_id = page.get_by_label("External ID")
    await expect(external_id).not_to_have_attribute("readonly", "")
    await page.goto(customer_url)
    await _assign_plan(page)

    alert = {
        "alert_type": "current_usage_amount",
        "code": "spend",
        "name": "Spend",
        "thresholds": [{"value": "100"}, {"value": "1000"}],
    }
    path = "subscriptions/sub-kolkata/alerts"
    await call_api(services, operator.api_key, "POST", path, {"alert": alert})
    await page.get_by_role("link", name="Usage").click()
    usage = page.locator("section.usage")
    calls = usage.locator('tr[data-charge="api_calls"]')
    await expect(calls.locator("[data-events]")).to_have_text("0", timeout=SEEN)
    await page.evaluate("window.sameDocument = true")
    await _send_calls(services, operator.api_key, 0, 3)
    await expect(calls.locator("[data-events]")).to_have_text("3", timeout=SEEN)
    await expect(calls.locator("[data-amount]")).to_have_text("0.15 USD")
    await _send_calls(services, operator.api_key, 3, 37)
    await expect(calls.locator("[data-units]")).to_have_text("40", timeout=SEEN)
    await expect(usage.locator("[data-total]")).to_have_text("2.00 USD")
    assert await page.evaluate("window.sameDocument === true"), "updated without a reload"
    # The alert's last checked value and its first threshold crossed, live too.
    spend = usage.locator('tr[data-alert="spend"]')
    await expect(spend.locator("[data-alert-value]")).to_have_text("2.00 USD", timeout=SEEN)
    await expect(spend.locator("strong")).to_have_text("1.00 USD")
    await expect(spend).not_to_contain_text("never")

    period_start = usage.locator("time.when").first
    await period_start.hover()
    card = period_start.locator(".tz-card")
    await expect(card).to_be_visible()
    text = await card.inner_text()
    assert "Asia/Kolkata UTC+05:30" in text
    assert re.search(r"Europe/Paris UTC\+0[12]:00", text)
    assert "UTC UTC+00:00" in text
    shown = (await period_start.inner_text()).splitlines()[0]
    assert f"Asia/Kolkata UTC+05:30\n{shown}:" in text, "shown in the customer's timezone"

    await page.get_by_role("link", name="Overview").click()
    await page.get_by_role("link", name="Edit", exact=True).click()
    locked = page.get_by_label("External ID")
    await expect(locked).to_have_attribute("readonly", "")
    await expect(page.locator("#external_id-hint")).to_contain_text("Locked")
    await page.get_by_label("Timezone").fill("America/New_York")
    await page.get_by_role("button", name="Save customer").click()
    await expect(page.locator("#customer-timezone")).to_have_text("America/New_York")

    await page.goto(f"{customer_url}/edit")
    await page.get_by_label("External ID").evaluate("e => e.removeAttribute('readonly')")
    await page.get_by_label("External ID").fill("renamed")
    await page.get_by_role("button", name="Save customer").click()
    await expect(page.locator("#external_id-error")).to_contain_text("Locked")
    await page.goto(customer_url)
    await expect(page.locator("#external-id")).to_have_text("cust-kolkata")

    await page.goto(f"{customer_url}/edit")
    await page.locator('main input[name="csrf_token"]').evaluate("e => e.remove()")
    await page.get_by_label("Name", exact=True).fill("No token")
    await page.get_by_role("button", name="Save customer").click()
    await expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    await page.goto(customer_url)
    await expect(page.get_by_role("heading", name="Kolkata Traders")).to_be_visible()

    other = await make_operator(settings, "Rival", "UTC")
    rival = await sign_in_page(browser, services, other)
    response = await rival.goto(customer_url)
    assert response is not None and response.status == 404
    await expect(rival.get_by_text("Kolkata Traders")).to_have_count(0)
    await page.context.close()
    await rival.context.close()
