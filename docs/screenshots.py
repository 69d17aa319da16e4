"""Screenshots of the console for the README, taken from a running stack (`make up`, or any
ingest and aggregator sharing the environment's Postgres and Kafka settings).

    .venv/bin/python docs/screenshots.py [--url http://127.0.0.1:3000]

It creates an organization with a console user (as `meterflow create-organization` and
`create-user` would), a metric, a plan, a few customers (one in Asia/Kolkata with the plan
and some usage) through the API, then signs in with headless Chromium and writes
docs/console-customers.png, docs/console-customer-form.png, docs/console-customer.png and
docs/console-usage.png.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright, expect

from console.users import create_user
from gateway.organizations import create_organization
from meterflow.settings import Settings

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CUSTOMERS = (
    ("kolkata-traders", "Kolkata Traders", "Asia/Kolkata", "ap@kolkata-traders.example"),
    ("chatham-fisheries", "Chatham Fisheries", "Pacific/Chatham", "billing@chatham.example"),
    ("acme-paris", "Acme Paris", "Europe/Paris", "compta@acme.example"),
    ("pago-pago-labs", "Pago Pago Labs", "Pacific/Pago_Pago", "ops@ppl.example"),
    ("initech", "Initech", None, "bill@initech.example"),
)


async def _api(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, json=body) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        return await response.json()


async def _seed(base: str, key: str, run: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        metrics = {}
        for code, name, aggregation, field in (
            ("api_calls", "API calls", "count_agg", None),
            ("storage_gb", "Storage", "max_agg", "gb"),
        ):
            body = {"name": name, "code": code, "aggregation_type": aggregation}
            if field:
                body["field_name"] = field
            made = await _api(http, f"{base}/api/v1/billable_metrics", {"billable_metric": body})
            metrics[code] = made["billable_metric"]["lago_id"]
        charges = [
            {"billable_metric_id": metrics["api_calls"], "charge_model": "standard"}
            | {"properties": {"amount": "0.002"}},
            {"billable_metric_id": metrics["storage_gb"], "charge_model": "package"}
            | {"properties": {"amount": "5", "package_size": 10, "free_units": 10}},
        ]
        plan = {"name": "Scale", "code": "scale", "interval": "monthly", "amount_cents": 4900}
        plan |= {"amount_currency": "USD", "charges": charges}
        await _api(http, f"{base}/api/v1/plans", {"plan": plan})
        for external_id, name, timezone, email in CUSTOMERS:
            customer = {"external_id": external_id, "name": name, "email": email}
            customer |= {"currency": "USD", "legal_name": f"{name} Ltd"}
            if timezone:
                customer["timezone"] = timezone
            await _api(http, f"{base}/api/v1/customers", {"customer": customer})
        subscription = {"external_customer_id": "kolkata-traders", "plan_code": "scale"}
        subscription |= {"external_id": f"kolkata-{run}", "name": "Kolkata Scale"}
        await _api(http, f"{base}/api/v1/subscriptions", {"subscription": subscription})
        await asyncio.sleep(2)  # the aggregator learns the subscription from the catalog
        events = [
            {"transaction_id": f"{run}-call-{i}", "external_subscription_id": f"kolkata-{run}"}
            | {"code": "api_calls"}
            for i in range(80)
        ] + [
            {"transaction_id": f"{run}-gb-{i}", "external_subscription_id": f"kolkata-{run}"}
            | {"code": "storage_gb", "properties": {"gb": gb}}
            for i, gb in enumerate((12, 31, 27))
        ]
        await _api(http, f"{base}/api/v1/events/batch", {"events": events})


async def _shoot(page: Page, name: str) -> None:
    path = DOCS / f"console-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")


async def _browse(base: str, email: str, password: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1280, "height": 820})
        await page.goto(f"{base}/console/")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/console/customers")
        await _shoot(page, "customers")
        await page.get_by_role("link", name="Add a customer").first.click()
        await page.get_by_label("Name", exact=True).fill("Nuku'alofa Logistics")
        await page.get_by_label("External ID").fill("acme-paris")
        await page.get_by_label("Timezone").fill("Pacific/Tongatapu")
        await page.get_by_role("button", name="Create customer").click()
        await _shoot(page, "customer-form")
        await page.goto(f"{base}/console/customers?q=kolkata")
        await page.get_by_role("link", name="Kolkata Traders").click()
        await page.get_by_text("Actions").click()
        await _shoot(page, "customer")
        await page.get_by_role("link", name="Usage").click()
        await expect(page.locator('tr[data-charge="api_calls"] [data-events]')).to_have_text(
            "80", timeout=30_000
        )
        await page.locator("section.usage time.when").first.hover()
        await _shoot(page, "usage")
        await browser.close()


async def main(base: str) -> None:
    settings = Settings.from_env()
    run = uuid.uuid4().hex[:6]
    org, key = await create_organization(settings, f"Screenshots {run}", "Europe/Paris")
    email, password = f"operator-{run}@example.test", secrets.token_urlsafe(12)
    await create_user(settings, str(org.id), email, password)
    await _seed(base, key, run)
    await _browse(base, email, password)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the API and console")
    asyncio.run(main(parser.parse_args().url.rstrip("/")))
