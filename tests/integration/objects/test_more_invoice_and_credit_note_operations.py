"""The rest of the invoice and credit note operations through Lago's Python client: lost
disputes, refresh, retry, fees listed and found, credit note metadata and its PDF."""

from __future__ import annotations

import io
import urllib.request
from typing import Any

import asyncpg
import pypdf
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    AddOn,
    CreditNote,
    Customer,
    Invoice,
    InvoiceFee,
    InvoiceFeesList,
    Item,
    Items,
    OneOffInvoice,
    WebhookEndpoint,
)

Call = Any


async def test_disputes_fees_credit_note_metadata_and_pdf(
    tenant: Any, call: Call, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    await call(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url="https://example.com"))
    await call(lago.customers.create, Customer(external_id="c-1", name="Ada", currency="USD"))
    await call(
        lago.add_ons.create,
        AddOn(name="Setup", code="setup", amount_cents=5000, amount_currency="USD"),
    )
    invoice = await call(
        lago.invoices.create,
        OneOffInvoice(
            external_customer_id="c-1",
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=3)]),
        ),
    )
    refreshed = await call(lago.invoices.refresh, invoice.lago_id)
    assert refreshed.total_amount_cents == 15000
    try:
        await call(lago.invoices.retry, invoice.lago_id)
        raise AssertionError("a finalized invoice was retried")
    except LagoApiError as exc:
        assert (exc.status_code, exc.response["code"]) == (405, "invalid_status")
    lost = await call(lago.invoices.lose_dispute, invoice.lago_id)
    assert lost.payment_dispute_lost_at

    fees = await call(lago.fees.find_all, {"external_customer_id": "c-1", "fee_type": "add_on"})
    (fee,) = fees["fees"]
    assert (fee.amount_cents, fee.lago_invoice_id, fee.item.code) == (
        15000,
        invoice.lago_id,
        "setup",
    )
    found = await call(lago.fees.find, fee.lago_id)
    assert found.units == "3.0" or float(found.units) == 3
    assert (await call(lago.fees.find_all, {"fee_type": "charge"}))["fees"] == []

    note = await call(
        lago.credit_notes.create,
        CreditNote(
            invoice_id=invoice.lago_id,
            items=Items(__root__=[Item(fee_id=fee.lago_id, amount_cents=2500)]),
            credit_amount_cents=2500,
            metadata={"ticket": "T-1"},
        ),
    )
    assert note.metadata == {"ticket": "T-1"}
    replaced = await call(lago.credit_notes.replace_metadata, note.lago_id, {"a": "1", "b": None})
    assert replaced == {"a": "1", "b": None}
    merged = await call(lago.credit_notes.merge_metadata, note.lago_id, {"c": "3"})
    assert merged == {"a": "1", "b": None, "c": "3"}
    assert await call(lago.credit_notes.delete_metadata_key, note.lago_id, "a") == {
        "b": None,
        "c": "3",
    }
    assert await call(lago.credit_notes.delete_all_metadata, note.lago_id) is None

    downloaded = await call(lago.credit_notes.download, note.lago_id)
    pdf = await call(lambda: urllib.request.urlopen(downloaded.file_url).read())
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert note.number in text and "25.00 USD" in text and invoice.number in text
    again = await call(lago.credit_notes.download, note.lago_id)
    assert again.file_url == downloaded.file_url
    queued = await db.fetch(
        "SELECT webhook_type FROM webhooks WHERE object_type = 'credit_note' ORDER BY created_at"
    )
    assert [q["webhook_type"] for q in queued] == ["credit_note.created", "credit_note.generated"]


async def test_void_with_a_credit_note(tenant: Any, call: Call) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c-1", currency="USD"))
    await call(
        lago.add_ons.create,
        AddOn(name="Setup", code="setup", amount_cents=5000, amount_currency="USD"),
    )

    async def one_off() -> Any:
        return await call(
            lago.invoices.create,
            OneOffInvoice(
                external_customer_id="c-1",
                fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=3)]),
            ),
        )

    paid = await one_off()
    await call(lago.invoices.update, Invoice(payment_status="succeeded"), paid.lago_id)
    try:
        await call(lago.invoices.void, paid.lago_id)
        raise AssertionError("a paid invoice was voided without a credit note")
    except LagoApiError as exc:
        assert exc.response["code"] == "not_voidable"
    voided = await call(
        lago.invoices.void_invoice,
        paid.lago_id,
        {"generate_credit_note": True, "refund_amount": 5000},
    )
    assert voided.status == "voided"
    notes = (await call(lago.credit_notes.find_all, {"invoice_number": paid.number}))[
        "credit_notes"
    ]
    assert [
        (n.refund_amount_cents, n.credit_amount_cents, n.total_amount_cents) for n in notes
    ] == [(5000, 10000, 15000)]

    unpaid = await one_off()
    try:
        await call(
            lago.invoices.void_invoice,
            unpaid.lago_id,
            {"generate_credit_note": True, "credit_amount": 100},
        )
        raise AssertionError("a partial credit was accepted")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {
            "credit_amount": ["does_not_match_invoice_remainder"]
        }
    assert (await call(lago.invoices.find, unpaid.lago_id)).status == "finalized"
