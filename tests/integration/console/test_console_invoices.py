"""The customer's add-on action, Invoices and Credit notes tabs and an invoice's page over
HTTP: an add-on invoiced from the Actions menu (the API's one-off invoice), its page with
fees, its PDF, and a credit note made through the API shown on both."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.service import IngestServer
from support.console import Operator, call_api, csrf_of, sign_in


async def test_an_add_on_invoiced_from_the_console_with_its_pdf_and_credit_note(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    key = operator.api_key
    add_on = {"name": "Setup", "code": "setup", "amount_cents": 10000, "amount_currency": "EUR"}
    await call_api(console_server.url, key, "POST", "add_ons", {"add_on": add_on})
    customer = {"external_id": "cust-eu", "name": "Euro GmbH", "currency": "EUR"}
    await call_api(console_server.url, key, "POST", "customers", {"customer": customer})
    await sign_in(http, console_server.url, operator)
    async with http.get(f"{console_server.url}/console/add_ons") as page:
        assert "Setup" in await page.text()
    async with http.get(f"{console_server.url}/console/customers?q=cust-eu") as page:
        found = re.search(r'href="(/console/customers/[0-9a-f-]{36})"', await page.text())
    assert found is not None
    customer_url = console_server.url + found.group(1)

    async with http.get(f"{customer_url}/add_ons/new") as page:
        token = csrf_of(await page.text())
    bad = {"csrf_token": token, "add_on_code": "setup", "units": "-2"}
    async with http.post(f"{customer_url}/add_ons/new", data=bad) as response:
        assert response.status == 422
        assert 'id="units-error">Not a valid value.' in await response.text()
    good = {"csrf_token": token, "add_on_code": "setup", "units": "2", "description": "Onboarding"}
    async with http.post(f"{customer_url}/add_ons/new", data=good) as response:
        assert response.url.path.endswith("/invoices")
        html = await response.text()
    assert "200.00 EUR" in html and "finalized" in html
    invoice_path = re.search(r'href="(/console/invoices/[0-9a-f-]{36})"', html)
    assert invoice_path is not None
    invoice_url = console_server.url + invoice_path.group(1)
    async with http.get(invoice_url) as page:
        html = await page.text()
    assert "Setup" in html and "200.00 EUR" in html

    async with http.post(f"{invoice_url}/pdf", data={"csrf_token": token}) as response:
        assert response.status == 200
        assert response.content_type == "application/pdf"
        assert (await response.read()).startswith(b"%PDF")

    lago_id = invoice_path.group(1).rsplit("/", 1)[1]
    invoice = await call_api(console_server.url, key, "GET", f"invoices/{lago_id}")
    fee_id = invoice["invoice"]["fees"][0]["lago_id"]
    note = {
        "invoice_id": lago_id,
        "reason": "other",
        "items": [{"fee_id": fee_id, "amount_cents": 5000}],
        "credit_amount_cents": 5000,
        "refund_amount_cents": 0,
    }
    made = await call_api(console_server.url, key, "POST", "credit_notes", {"credit_note": note})
    number = made["credit_note"]["number"]
    async with http.get(f"{customer_url}/credit_notes") as page:
        assert number in await page.text()
    async with http.get(invoice_url) as page:
        assert number in await page.text()

    # The customer paid by bank transfer: recorded from the Actions menu.
    async with http.get(f"{customer_url}/payments/new") as page:
        assert "(200.00 EUR due)" in await page.text()
    payment = {"csrf_token": token, "invoice_id": lago_id, "amount": "250", "reference": "wire-7"}
    async with http.post(f"{customer_url}/payments/new", data=payment) as response:
        assert response.status == 422
        assert 'id="amount-error">More than the invoice still asks.' in await response.text()
    payment["amount"] = "200.00"
    async with http.post(f"{customer_url}/payments/new", data=payment) as response:
        assert response.url.path.endswith("/invoices")
    async with http.get(invoice_url) as page:
        html = await page.text()
    assert "Paid</dt><dd>-200.00 EUR" in html and "Amount due</dt><dd><strong>0.00 EUR" in html
    paid = await call_api(console_server.url, key, "GET", f"invoices/{lago_id}")
    assert paid["invoice"]["payment_status"] == "succeeded"
    async with http.get(f"{console_server.url}/console/revenue") as page:
        html = await page.text()
    this_month = re.search(r"<td>(\d{4}-\d{2})</td>\s*<td class=\"num\">([^<]+)</td>", html)
    assert this_month is not None and this_month.group(2) == "200.00 EUR", html[-2000:]


async def test_a_coupon_and_prepaid_credits_from_the_actions_menu(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    key, base = operator.api_key, console_server.url
    coupon = {"name": "Welcome", "code": "welcome", "coupon_type": "fixed_amount"}
    coupon |= {"amount_cents": 500, "amount_currency": "USD", "frequency": "once"}
    coupon |= {"expiration": "no_expiration", "reusable": False}
    await call_api(base, key, "POST", "coupons", {"coupon": coupon})
    customer = {"external_id": "cust-us", "name": "US Inc", "currency": "USD"}
    created = await call_api(base, key, "POST", "customers", {"customer": customer})
    customer_url = f"{base}/console/customers/{created['customer']['lago_id']}"
    await sign_in(http, base, operator)

    async with http.get(f"{customer_url}/coupons/new") as page:
        html = await page.text()
        token = csrf_of(html)
    assert "Welcome (welcome)" in html
    form = {"csrf_token": token, "coupon_code": "welcome"}
    async with http.post(f"{customer_url}/coupons/new", data=form) as response:
        assert response.url.path.endswith("/coupons")
        assert "Welcome" in await response.text() and "5.00 USD" in await response.text()
    async with http.post(f"{customer_url}/coupons/new", data=form) as response:
        assert response.status == 422
        assert "already applied to this customer once" in await response.text()

    wallet = {"csrf_token": token, "name": "Prepaid", "currency": "EUR", "rate_amount": "1"}
    async with http.post(f"{customer_url}/wallets/new", data=wallet) as response:
        assert response.status == 422
        assert 'id="currency-error">Not the customer' in await response.text()
    wallet |= {"currency": "USD", "paid_credits": "20", "granted_credits": "5"}
    async with http.post(f"{customer_url}/wallets/new", data=wallet) as response:
        html = await response.text()
    assert response.url.path.endswith("/wallets") and "25.00 USD" in html
    async with http.get(f"{customer_url}/edit") as page:
        assert "Locked: a plan, coupon, wallet" in await page.text()
