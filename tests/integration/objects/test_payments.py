"""Manual payments through Lago's Python client: recorded against a finalized invoice, at most
what it still asks, the invoice's paid and due amounts following, its payment status
`succeeded` (and announced) once nothing is due; listed, found, and refused with the field
named."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    AddOn,
    InvoiceFee,
    InvoiceFeesList,
    OneOffInvoice,
    Payment,
    WebhookEndpoint,
)

from gateway.organizations import create_organization
from integration.invoicer.conftest import kit, utc
from meterflow.settings import Settings

__all__ = ["kit"]


async def _refused(call: Any, fn: Any, *args: Any) -> tuple[int, Any]:
    try:
        await call(fn, *args)
    except LagoApiError as exc:
        return exc.status_code, exc.response.get("error_details") or exc.response["code"]
    raise AssertionError(f"{args} was accepted")


async def test_payments_pay_an_invoice_off(
    kit: Any, settings: Settings, server: Any, call: Any, db: asyncpg.Connection
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    await call(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url="https://example.com/h"))
    catalog = await kit.catalog(organization_id=org.id, subscription_at=utc(2026, 1, 1))
    await call(
        lago.add_ons.create,
        AddOn(name="Setup", code="setup", amount_cents=10000, amount_currency="EUR"),
    )

    async def one_off() -> Any:
        fees = InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=2)])
        customer = catalog.external_customer_id
        return await call(
            lago.invoices.create, OneOffInvoice(external_customer_id=customer, fees=fees)
        )

    invoice = await one_off()
    assert invoice.total_amount_cents == 20000

    wire = await call(
        lago.payments.create,
        Payment(invoice_id=invoice.lago_id, amount_cents=5000, reference="wire-1"),
    )
    assert (wire.amount_cents, wire.amount_currency, wire.type) == (5000, "EUR", "manual")
    assert (wire.invoice_ids, wire.invoice_numbers) == ([invoice.lago_id], [invoice.number])
    found = await call(lago.invoices.find, invoice.lago_id)
    assert (found.total_paid_amount_cents, found.total_due_amount_cents) == (5000, 15000)
    assert found.payment_status == "pending"

    too_much = Payment(invoice_id=invoice.lago_id, amount_cents=15001, reference="wire-2")
    assert await _refused(call, lago.payments.create, too_much) == (
        422,
        {"amount_cents": ["higher_than_remaining_invoice_amount"]},
    )
    rest = await call(
        lago.payments.create,
        Payment(
            invoice_id=invoice.lago_id, amount_cents=15000, reference="wire-2", paid_at="2026-11-20"
        ),
    )
    found = await call(lago.invoices.find, invoice.lago_id)
    assert (found.total_due_amount_cents, found.payment_status) == (0, "succeeded")
    announced = await db.fetchval(
        "SELECT count(*) FROM webhooks WHERE webhook_type = 'invoice.payment_status_updated'"
    )
    assert announced == 1
    again = Payment(invoice_id=invoice.lago_id, amount_cents=1, reference="wire-3")
    assert await _refused(call, lago.payments.create, again) == (
        422,
        {"invoice_id": ["invoice_already_paid"]},
    )

    other = await one_off()
    await call(lago.invoices.void, other.lago_id)
    voided = Payment(invoice_id=other.lago_id, amount_cents=100, reference="cheque")
    assert await _refused(call, lago.payments.create, voided) == (
        422,
        {"invoice_id": ["invoice_not_finalized"]},
    )

    listed = await call(lago.payments.find_all, {"invoice_id": invoice.lago_id})
    assert [p.lago_id for p in listed["payments"]] == [rest.lago_id, wire.lago_id]
    assert listed["meta"]["total_count"] == 2
    assert (await call(lago.payments.find, wire.lago_id)).reference == "wire-1"
    unknown = "00000000-0000-0000-0000-000000000000"
    assert await _refused(call, lago.payments.find, unknown) == (404, "payment_not_found")
    nobody = await call(lago.payments.find_all, {"external_customer_id": "nobody"})
    assert nobody["payments"] == []
    # The customer's own list (no client method).
    customer = catalog.external_customer_id
    url = f"{server.url}/api/v1/customers/{customer}/payments"
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as response:
        mine = await response.json()
    assert [p["lago_id"] for p in mine["payments"]] == [rest.lago_id, wire.lago_id]
