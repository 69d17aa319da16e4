"""`/api/v1/invoices/{lago_id}/...` action: requests to `store.invoice_actions`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db, webhook_outbox
from read_model.invoices import PAYMENT_STATUSES, extended_body, invoice_row
from resources.document_files import base_url
from store import credit_note_amounts, credit_notes, invoice_actions
from web.context import context, organization
from web.errors import NotAllowed, ValidationFailed
from web.payload import Fields, ok, read_json, read_wrapped


async def void(request: web.Request) -> web.Response:
    """Void a finalized invoice that is not paid (Lago's rule without a body). With
    `generate_credit_note`, any finalized invoice, paid or not, is voided and what is left to
    credit of it goes on one credit note: `refund_amount` (a paid invoice only) and
    `credit_amount` (by default the rest) must add up to it, since the second, voided credit
    note Lago makes of a remainder is not supported."""
    ctx, org = context(request), organization(request)
    raw = await read_json(request) if request.can_read_body else {}
    fields = Fields(raw if isinstance(raw, dict) else {}, invoice_actions.VOID_FIELDS)
    generate = bool(fields.flag("generate_credit_note"))
    refund = fields.integer("refund_amount", minimum=0) or 0
    credit = fields.integer("credit_amount", minimum=0)
    fields.check()
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"], lock=True)
        if invoice["status"] != "finalized" or (
            invoice["payment_status"] == "succeeded" and not generate
        ):
            raise NotAllowed(code="not_voidable")
        if generate:
            items = await credit_note_amounts.remaining_items(conn, invoice["id"])
            if items:
                amounts, chosen = await credit_note_amounts.amounts_of(conn, invoice, items)
                credited = amounts.total_cents - refund if credit is None else credit
                if credited < 0 or credited + refund != amounts.total_cents:
                    raise ValidationFailed({"credit_amount": ["does_not_match_invoice_remainder"]})
                await credit_notes.issue(
                    conn, org.id, invoice, chosen, amounts, "other", None, credited, refund
                )
        voided = await conn.fetchrow(
            "UPDATE invoices SET status = 'voided', voided_at = now(), updated_at = now() "
            "WHERE id = $1 RETURNING *",
            invoice["id"],
        )
        assert voided is not None
        body = await extended_body(conn, voided)
        await webhook_outbox.emit(conn, org.id, "invoice.voided", voided["id"], body)
    return ok({"invoice": body})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "invoice"), invoice_actions.UPDATE_FIELDS)
    payment_status = fields.text("payment_status", choices=PAYMENT_STATUSES)
    raw_metadata = fields.array("metadata")
    fields.check()
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"], lock=True)
        metadata = invoice["metadata"]
        if raw_metadata is not None:
            metadata = invoice_actions.parse_metadata(fields, raw_metadata, invoice["metadata"])
            fields.check()
        if payment_status is not None and invoice["status"] == "draft":
            raise ValidationFailed({"payment_status": ["invoice_not_finalized"]})
        changed = payment_status is not None and payment_status != invoice["payment_status"]
        updated = await conn.fetchrow(
            "UPDATE invoices SET payment_status = coalesce($2, payment_status), metadata = $3, "
            "updated_at = now() WHERE id = $1 RETURNING *",
            invoice["id"],
            payment_status,
            metadata,
        )
        assert updated is not None
        body = await extended_body(conn, updated)
        if changed:
            await webhook_outbox.emit(
                conn, org.id, "invoice.payment_status_updated", updated["id"], body
            )
    return ok({"invoice": body})


async def lose_dispute(request: web.Request) -> web.Response:
    """Mark the payment dispute of a finalized invoice as lost (`payment_dispute_lost_at`)."""
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"], lock=True)
        if invoice["status"] != "finalized":
            raise NotAllowed(code="not_disputable")
        updated = await conn.fetchrow(
            "UPDATE invoices SET payment_dispute_lost_at = coalesce(payment_dispute_lost_at, "
            "now()), updated_at = now() WHERE id = $1 RETURNING *",
            invoice["id"],
        )
        assert updated is not None
        body = await extended_body(conn, updated)
    return ok({"invoice": body})


async def refresh(request: web.Request) -> web.Response:
    """The invoice as it is now: a draft is already refreshed by every late usage message of
    its period (the invoicer merges them as they arrive), so nothing is left to recompute."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"])
        body = await extended_body(conn, invoice)
    return ok({"invoice": body})


async def retry(request: web.Request) -> web.Response:
    """Lago retries the generation of a `failed` invoice; meterflow writes an invoice whole
    or not at all, so no invoice is ever `failed` and none can be retried (405)."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        await invoice_row(conn, org.id, request.match_info["lago_id"])
    raise NotAllowed(code="invalid_status")


async def download(request: web.Request) -> web.Response:
    """Render the PDF on the first download (announced by `invoice.generated`) and answer the
    invoice with its `file_url`; a draft has no PDF yet (Lago answers it without one)."""
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"], lock=True)
        body = await invoice_actions.invoice_file(conn, org.id, invoice, base_url(request))
    return ok({"invoice": body})


def routes() -> list[web.RouteDef]:
    return [
        web.put("/api/v1/invoices/{lago_id}", update),
        web.post("/api/v1/invoices/{lago_id}/void", void),
        web.post("/api/v1/invoices/{lago_id}/download", download),
        # The spec says POST, Lago's Python client sends PUT: both are served.
        web.post("/api/v1/invoices/{lago_id}/lose_dispute", lose_dispute),
        web.put("/api/v1/invoices/{lago_id}/lose_dispute", lose_dispute),
        web.put("/api/v1/invoices/{lago_id}/refresh", refresh),
        web.post("/api/v1/invoices/{lago_id}/retry", retry),
    ]
