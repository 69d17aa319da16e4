"""Add-ons, one-off invoices and what can be done to an invoice (void, payment status,
metadata, PDF), through Lago's own Python client against a real server and Postgres."""

from __future__ import annotations

import io
import urllib.request
import uuid
from typing import Any

import asyncpg
import pypdf
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    AddOn,
    Customer,
    Invoice,
    InvoiceFee,
    InvoiceFeesList,
    InvoiceMetadata,
    InvoiceMetadataList,
    OneOffInvoice,
    Tax,
    WebhookEndpoint,
)

Call = Any


async def _fails(call: Call, fn: Any, *args: Any) -> LagoApiError:
    try:
        await call(fn, *args)
    except LagoApiError as exc:
        return exc
    raise AssertionError(f"{fn} succeeded")


async def test_add_on_lifecycle(tenant: Any, call: Call) -> None:
    lago = tenant.client
    await call(lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0))
    created = await call(
        lago.add_ons.create,
        AddOn(
            name="Setup",
            code="setup",
            amount_cents=10000,
            amount_currency="EUR",
            description="Onboarding",
            tax_codes=["vat"],
        ),
    )
    assert (created.code, created.amount_cents, created.amount_currency) == ("setup", 10000, "EUR")
    assert [t.code for t in created.taxes.__root__] == ["vat"]
    updated = await call(
        lago.add_ons.update, AddOn(amount_cents=12000, invoice_display_name="Set-up"), "setup"
    )
    assert (updated.amount_cents, updated.invoice_display_name) == (12000, "Set-up")
    assert updated.description == "Onboarding"
    found = await call(lago.add_ons.find, "setup")
    assert found.lago_id == created.lago_id
    listed = await call(lago.add_ons.find_all)
    assert [a.code for a in listed["add_ons"]] == ["setup"]
    same_code = AddOn(name="x", code="setup", amount_cents=1, amount_currency="EUR")
    duplicate = await _fails(call, lago.add_ons.create, same_code)
    assert duplicate.status_code == 422
    assert duplicate.response["error_details"] == {"code": ["value_already_exist"]}
    invalid = await _fails(call, lago.add_ons.create, AddOn(name="x", code="y", amount_cents=-1))
    assert invalid.response["error_details"] == {
        "amount_cents": ["value_is_invalid"],
        "amount_currency": ["value_is_mandatory"],
    }
    deleted = await call(lago.add_ons.destroy, "setup")
    assert deleted.code == "setup"
    missing = await _fails(call, lago.add_ons.find, "setup")
    assert (missing.status_code, missing.response["code"]) == (404, "add_on_not_found")


async def _one_off(tenant: Any, call: Call) -> Any:
    """A one-off invoice of two add-on fees: 2 x 100.00 EUR with 20 % VAT, and 3 x 12.50 EUR
    (unit amount overridden) with 5.5 % tax: fees 237.50, taxes 40.00 + 2.06 = 42.06,
    total 279.56 EUR."""
    lago = tenant.client
    await call(lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0))
    await call(lago.taxes.create, Tax(name="Reduced", code="reduced", rate=5.5))
    await call(
        lago.customers.create,
        Customer(external_id="cust-1", name="Ada", currency="EUR", timezone="Europe/Paris"),
    )
    for code, cents, taxes in (("setup", 10000, ["vat"]), ("training", 9900, ["reduced"])):
        await call(
            lago.add_ons.create,
            AddOn(
                name=code.title(),
                code=code,
                amount_cents=cents,
                amount_currency="EUR",
                tax_codes=taxes,
            ),
        )
    return await call(
        lago.invoices.create,
        OneOffInvoice(
            external_customer_id="cust-1",
            currency="EUR",
            fees=InvoiceFeesList(
                __root__=[
                    InvoiceFee(add_on_code="setup", units=2),
                    InvoiceFee(
                        add_on_code="training",
                        units=3,
                        unit_amount_cents=1250,
                        description="Three sessions",
                    ),
                ]
            ),
        ),
    )


async def test_one_off_invoice_of_two_add_on_fees(tenant: Any, call: Call) -> None:
    invoice = await _one_off(tenant, call)
    assert (invoice.invoice_type, invoice.status) == ("one_off", "finalized")
    assert invoice.fees_amount_cents == 23750
    assert invoice.taxes_amount_cents == 4206
    assert invoice.sub_total_including_taxes_amount_cents == 27956
    assert invoice.total_amount_cents == 27956
    fees = invoice.fees.__root__
    assert [(f.item.code, float(f.units), f.amount_cents, f.taxes_amount_cents) for f in fees] == [
        ("setup", 2.0, 20000, 4000),
        ("training", 3.0, 3750, 206),
    ]
    assert fees[1].description == "Three sessions" and fees[1].item.type == "add_on"
    listed = await call(tenant.client.invoices.find_all, {"external_customer_id": "cust-1"})
    assert [i.lago_id for i in listed["invoices"]] == [invoice.lago_id]


async def test_invoice_pdf_void_and_update(tenant: Any, call: Call, db: asyncpg.Connection) -> None:
    lago = tenant.client
    await call(
        lago.webhook_endpoints.create, WebhookEndpoint(webhook_url="https://example.com/hook")
    )
    invoice = await _one_off(tenant, call)
    downloaded = await call(lago.invoices.download, invoice.lago_id)
    assert downloaded.file_url
    pdf = await call(lambda: urllib.request.urlopen(downloaded.file_url).read())
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert invoice.number in text
    assert "279.56 EUR" in text and "Ada" in text and "Europe/Paris" in text
    again = await call(lago.invoices.download, invoice.lago_id)
    assert again.file_url == downloaded.file_url, "rendered once, then served"

    updated = await call(
        lago.invoices.update,
        Invoice(
            payment_status="failed",
            metadata=InvoiceMetadataList(__root__=[InvoiceMetadata(key="po", value="PO-7")]),
        ),
        invoice.lago_id,
    )
    assert updated.payment_status == "failed"
    assert [(m.key, m.value) for m in updated.metadata.__root__] == [("po", "PO-7")]

    voided = await call(lago.invoices.void, invoice.lago_id)
    assert voided.status == "voided" and voided.voided_at
    again_void = await _fails(call, lago.invoices.void, invoice.lago_id)
    assert (again_void.status_code, again_void.response["code"]) == (405, "not_voidable")
    found = await call(lago.invoices.find, invoice.lago_id)
    assert found.status == "voided"
    queued = await db.fetch(
        "SELECT webhook_type, payload -> 'invoice' ->> 'status' AS status FROM webhooks "
        "WHERE object_id = $1 ORDER BY created_at",
        uuid.UUID(invoice.lago_id),
    )
    assert [(q["webhook_type"], q["status"]) for q in queued] == [
        ("invoice.one_off_created", "finalized"),
        ("invoice.generated", "finalized"),
        ("invoice.payment_status_updated", "finalized"),
        ("invoice.voided", "voided"),
    ], "each change queued its webhook in its own transaction"


async def test_one_off_invoice_bad_input_is_refused_and_writes_nothing(
    tenant: Any, call: Call, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c-1", currency="EUR"))
    await call(
        lago.add_ons.create,
        AddOn(name="Big", code="big", amount_cents=2**62, amount_currency="EUR"),
    )

    def one_off(**fee: Any) -> OneOffInvoice:
        return OneOffInvoice(
            external_customer_id="c-1", fees=InvoiceFeesList(__root__=[InvoiceFee(**fee)])
        )

    overflow = await _fails(call, lago.invoices.create, one_off(add_on_code="big", units=4))
    assert (overflow.status_code, overflow.response["error_details"]) == (
        422,
        {"fees.0.units": ["fee_amount_too_large"]},
    )
    unknown = await _fails(call, lago.invoices.create, one_off(add_on_code="nope"))
    assert (unknown.status_code, unknown.response["code"]) == (404, "add_on_not_found")
    negative = await _fails(call, lago.invoices.create, one_off(add_on_code="big", units=-1))
    assert negative.response["error_details"] == {"fees.0.units": ["value_is_invalid"]}
    empty = await _fails(
        call,
        lago.invoices.create,
        OneOffInvoice(external_customer_id="c-1", fees=InvoiceFeesList(__root__=[])),
    )
    assert empty.response["error_details"] == {"fees": ["no_fees"]}
    assert await db.fetchval("SELECT count(*) FROM invoices") == 0
    assert await db.fetchval("SELECT count(*) FROM invoice_sequences") == 0
