"""Credit notes through Lago's Python client: estimated, created on a one-off invoice,
consumed by the customer's next subscription invoices (written by the real invoicer from
periods-closed), oldest first, and voided; offsets deducted from an unpaid invoice's amount
due; amounts worked out by hand."""

from __future__ import annotations

from typing import Any

import asyncpg
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    AddOn,
    CreditNote,
    CreditNoteEstimate,
    CreditNoteUpdate,
    Invoice,
    InvoiceFee,
    InvoiceFeesList,
    Item,
    Items,
    OneOffInvoice,
    Tax,
    WebhookEndpoint,
)

from gateway.organizations import create_organization
from integration.invoicer.conftest import kit, start_invoicer, utc
from meterflow.settings import Settings

__all__ = ["kit", "start_invoicer"]


async def _taxed_one_off(lago: Any, call: Any, external_customer_id: str) -> Any:
    """A 20 % VAT, a 100.00 EUR add-on taxed with it, and a one-off invoice of two, not paid:
    2 x 100.00 EUR + 20 % VAT = 240.00 EUR."""
    await call(lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0))
    await call(
        lago.add_ons.create,
        AddOn(
            name="Setup", code="setup", amount_cents=10000, amount_currency="EUR", tax_codes=["vat"]
        ),
    )
    one_off = await call(
        lago.invoices.create,
        OneOffInvoice(
            external_customer_id=external_customer_id,
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=2)]),
        ),
    )
    assert one_off.total_amount_cents == 24000
    return one_off


async def test_credit_note_consumed_by_next_subscription_invoices_then_voided(
    kit: Any,
    start_invoicer: Any,
    settings: Settings,
    server: Any,
    call: Any,
    db: asyncpg.Connection,
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    await call(
        lago.webhook_endpoints.create, WebhookEndpoint(webhook_url="https://example.com/hook")
    )
    # The kit's customer (EUR) and its subscription to a 10.00 EUR monthly plan from 1 Jan.
    catalog = await kit.catalog(organization_id=org.id, subscription_at=utc(2026, 1, 1))
    one_off = await _taxed_one_off(lago, call, catalog.external_customer_id)
    fee_id = one_off.fees.__root__[0].lago_id
    items = Items(__root__=[Item(fee_id=fee_id, amount_cents=5000)])

    # Crediting 50.00 of the fee: 50.00 + 10.00 VAT = 60.00.
    estimated = await call(
        lago.credit_notes.estimate, CreditNoteEstimate(invoice_id=one_off.lago_id, items=items)
    )
    assert (estimated.taxes_amount_cents, estimated.max_creditable_amount_cents) == (1000, 6000)
    assert estimated.max_refundable_amount_cents == 0, "the invoice is not paid"
    try:
        await call(
            lago.credit_notes.create,
            CreditNote(invoice_id=one_off.lago_id, items=items, credit_amount_cents=1000),
        )
        raise AssertionError("a credit note not matching its items was accepted")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {"base": ["does_not_match_item_amounts"]}
    note = await call(
        lago.credit_notes.create,
        CreditNote(
            invoice_id=one_off.lago_id,
            reason="product_unsatisfactory",
            items=items,
            credit_amount_cents=6000,
            refund_amount_cents=0,
        ),
    )
    assert (note.credit_status, note.total_amount_cents, note.balance_amount_cents) == (
        "available",
        6000,
        6000,
    )
    assert note.number == f"{one_off.number}-CN001"
    too_much = Items(__root__=[Item(fee_id=fee_id, amount_cents=15001)])
    try:
        await call(
            lago.credit_notes.estimate,
            CreditNoteEstimate(invoice_id=one_off.lago_id, items=too_much),
        )
        raise AssertionError("more than the fee's creditable remainder was accepted")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {
            "items.0.amount_cents": ["higher_than_remaining_fee_amount"]
        }

    # January: 10.00 subscription + 100 units x 0.05 = 15.00, all paid by the credit note
    # (balance 60.00 -> 45.00). February: 10.00, paid by it too (45.00 -> 35.00).
    standard = catalog.usage(catalog.standard_charge, "standard", 100)
    await kit.publish(
        catalog.closed(utc(2026, 1, 1), utc(2026, 2, 1), [standard]),
        catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), []),
    )
    async with start_invoicer():
        await kit.wait_for_invoices(3)
    rows = await db.fetch(
        "SELECT fees_amount_cents, credit_notes_amount_cents, total_amount_cents FROM invoices "
        "WHERE invoice_type = 'subscription' ORDER BY period_start"
    )
    assert [tuple(r) for r in rows] == [(1500, 1500, 0), (1000, 1000, 0)]
    # January asks nothing any more (the credit note paid it): its fee cannot be offset.
    january_id = await db.fetchval(
        "SELECT id FROM invoices WHERE invoice_type = 'subscription' ORDER BY period_start"
    )
    january = await call(lago.invoices.find, str(january_id))
    f = next(fee for fee in january.fees.__root__ if fee.amount_cents)
    try:
        await call(
            lago.credit_notes.create,
            CreditNote(
                invoice_id=january.lago_id,
                items=Items(__root__=[Item(fee_id=f.lago_id, amount_cents=f.amount_cents)]),
                offset_amount_cents=f.amount_cents,
            ),
        )
        raise AssertionError("an offset larger than the invoice's amount due was accepted")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {
            "offset_amount_cents": ["higher_than_remaining_invoice_amount"]
        }
    found = await call(lago.credit_notes.find, note.lago_id)
    assert (found.credit_status, found.balance_amount_cents) == ("available", 3500)
    listed = await call(
        lago.credit_notes.find_all, {"external_customer_id": catalog.external_customer_id}
    )
    assert [n.lago_id for n in listed["credit_notes"]] == [note.lago_id]

    voided = await call(lago.credit_notes.void, note.lago_id)
    assert (voided.credit_status, voided.balance_amount_cents) == ("voided", 0)
    try:
        await call(lago.credit_notes.void, note.lago_id)
        raise AssertionError("a voided credit note was voided again")
    except LagoApiError as exc:
        assert (exc.status_code, exc.response["code"]) == (405, "no_voidable_amount")
    # March: nothing left to credit, the customer owes 10.00.
    await kit.publish(catalog.closed(utc(2026, 3, 1), utc(2026, 4, 1), []))
    async with start_invoicer():
        await kit.wait_for_invoices(4)
    march = await db.fetchrow(
        "SELECT credit_notes_amount_cents, total_amount_cents FROM invoices "
        "WHERE period_start = $1",
        utc(2026, 3, 1),
    )
    assert tuple(march) == (0, 1000)
    uses = await db.fetch("SELECT amount_cents FROM credit_note_uses ORDER BY created_at")
    assert [u["amount_cents"] for u in uses] == [1500, 1000]
    try:
        await call(
            lago.credit_notes.update, CreditNoteUpdate(refund_status="succeeded"), note.lago_id
        )
        raise AssertionError("a refund status was set on a credit note without refund")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {"refund_status": ["nothing_to_refund"]}

    # Once the one-off invoice is paid, 10.00 of the fee (12.00 with VAT) can be refunded.
    await call(lago.invoices.update, Invoice(payment_status="succeeded"), one_off.lago_id)
    refund = await call(
        lago.credit_notes.create,
        CreditNote(
            invoice_id=one_off.lago_id,
            items=Items(__root__=[Item(fee_id=fee_id, amount_cents=1000)]),
            refund_amount_cents=1200,
        ),
    )
    assert (refund.credit_status, refund.refund_status, refund.number) == (
        None,
        "pending",
        f"{one_off.number}-CN002",
    )
    refunded = await call(
        lago.credit_notes.update, CreditNoteUpdate(refund_status="succeeded"), refund.lago_id
    )
    assert refunded.refund_status == "succeeded"
    queued = await db.fetch("SELECT webhook_type, count(*) FROM webhooks GROUP BY webhook_type")
    assert {q["webhook_type"]: q["count"] for q in queued} == {
        "invoice.one_off_created": 1,
        "invoice.payment_status_updated": 1,
        "invoice.created": 3,
        "credit_note.created": 2,
    }


async def test_a_draft_takes_credit_notes_when_it_is_finalized(
    kit: Any, start_invoicer: Any, settings: Settings, server: Any, call: Any
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    # A ten-year grace period: the January invoice (10.00) waits as a draft.
    catalog = await kit.catalog(
        organization_id=org.id, subscription_at=utc(2026, 1, 1), grace_days=3650
    )
    await call(
        lago.add_ons.create,
        AddOn(name="Setup", code="setup", amount_cents=400, amount_currency="EUR"),
    )
    one_off = await call(
        lago.invoices.create,
        OneOffInvoice(
            external_customer_id=catalog.external_customer_id,
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup")]),
        ),
    )
    fee_id = one_off.fees.__root__[0].lago_id
    await call(
        lago.credit_notes.create,
        CreditNote(
            invoice_id=one_off.lago_id,
            items=Items(__root__=[Item(fee_id=fee_id, amount_cents=400)]),
            credit_amount_cents=400,
        ),
    )
    await kit.publish(catalog.closed(utc(2026, 1, 1), utc(2026, 2, 1), []))
    async with start_invoicer(finalize_interval=3600):
        await kit.wait_for_invoices(2)
    drafts = await call(lago.invoices.find_all, {"status": "draft"})
    (draft,) = drafts["invoices"]
    assert (draft.credit_notes_amount_cents, draft.total_amount_cents) == (0, 1000)
    finalized = await call(lago.invoices.finalize, draft.lago_id)
    assert finalized.status == "finalized"
    assert (finalized.credit_notes_amount_cents, finalized.total_amount_cents) == (400, 600)
    notes = await call(lago.credit_notes.find_all)
    assert [(n.credit_status, n.balance_amount_cents) for n in notes["credit_notes"]] == [
        ("consumed", 0)
    ]


async def test_an_offset_deducts_from_the_amount_due_of_an_unpaid_invoice_only(
    kit: Any, settings: Settings, server: Any, call: Any, db: asyncpg.Connection
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    catalog = await kit.catalog(organization_id=org.id, subscription_at=utc(2026, 1, 1))
    one_off = await _taxed_one_off(lago, call, catalog.external_customer_id)
    fee_id = one_off.fees.__root__[0].lago_id
    items = Items(__root__=[Item(fee_id=fee_id, amount_cents=5000)])
    estimated = await call(
        lago.credit_notes.estimate, CreditNoteEstimate(invoice_id=one_off.lago_id, items=items)
    )
    assert (estimated.max_offsettable_amount_cents, estimated.max_refundable_amount_cents) == (
        6000,
        0,
    )
    # 50.00 of the fee + 10.00 VAT: 10.00 to the customer's balance, 50.00 off the invoice.
    note = await call(
        lago.credit_notes.create,
        CreditNote(
            invoice_id=one_off.lago_id,
            items=items,
            credit_amount_cents=1000,
            offset_amount_cents=5000,
        ),
    )
    assert (note.offset_amount_cents, note.credit_amount_cents, note.balance_amount_cents) == (
        5000,
        1000,
        1000,
    )
    assert (note.credit_status, note.refund_status) == ("available", None)
    invoice = await call(lago.invoices.find, one_off.lago_id)
    assert (
        invoice.total_amount_cents,
        invoice.total_offsetted_credit_note_amount_cents,
        invoice.total_due_amount_cents,
    ) == (24000, 5000, 19000)
    # Voiding drops what is left to credit; the offset stays deducted.
    await call(lago.credit_notes.void, note.lago_id)
    assert (await call(lago.invoices.find, one_off.lago_id)).total_due_amount_cents == 19000
    assert (
        await db.fetchval(
            "SELECT offset_amount_cents FROM credit_notes WHERE id = $1", note.lago_id
        )
        == 5000
    )

    await call(lago.invoices.update, Invoice(payment_status="succeeded"), one_off.lago_id)
    estimated = await call(
        lago.credit_notes.estimate, CreditNoteEstimate(invoice_id=one_off.lago_id, items=items)
    )
    assert estimated.max_offsettable_amount_cents == 0, "the invoice is paid"
    try:
        await call(
            lago.credit_notes.create,
            CreditNote(invoice_id=one_off.lago_id, items=items, offset_amount_cents=6000),
        )
        raise AssertionError("a paid invoice took an offset")
    except LagoApiError as exc:
        assert exc.response["error_details"] == {
            "offset_amount_cents": ["cannot_offset_paid_invoice"]
        }
