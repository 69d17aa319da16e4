"""What can be done to an issued invoice: void it, change its payment status and metadata,
and download its PDF (`file_url`, a secret link served without an API key, as Lago's
presigned links are). Each change and its webhook commit together."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from meterflow import webhook_outbox
from meterflow.db import Conn, existing_row
from read_model.invoices import extended_body, invoice_row
from store import credit_note_amounts, credit_notes, document_files
from store.documents_pdf import render_invoice
from web.errors import NotAllowed, ValidationFailed
from web.payload import Fields, iso

UPDATE_FIELDS = {"payment_status", "metadata"}


_METADATA = {"id", "key", "value"}


VOID_FIELDS = {"generate_credit_note", "refund_amount", "credit_amount"}


def parse_metadata(fields: Fields, raw: list[Any], current: list[dict[str, Any]]) -> list[Any]:
    """The invoice's metadata after this input: an item with `id` updates that entry, one
    without is added; entries not named are dropped (Lago replaces the list)."""
    by_id = {m["lago_id"]: m for m in current}
    out = []
    for _, item, entry in fields.each("metadata", raw, _METADATA):
        key = entry.text("key", required=True)
        value = entry.text("value", required=True, max_length=140)
        known = by_id.get(item.get("id") or "")
        out.append(
            {
                "lago_id": known["lago_id"] if known else str(uuid.uuid4()),
                "key": key,
                "value": value,
                "created_at": known["created_at"] if known else iso(datetime.now(UTC)),
            }
        )
    return out


async def invoice_file(conn: Conn, org: uuid.UUID, lago_id: str, base_url: str) -> dict[str, Any]:
    """The invoice's extended body with the `file_url` of its PDF (under `base_url`),
    rendered and stored the first time (in the caller's transaction, the invoice row
    locked); a draft's body comes without one."""
    invoice = await invoice_row(conn, org, lago_id, lock=True)
    body = await extended_body(conn, invoice)
    if invoice["status"] == "draft":
        return body
    return await document_files.with_file(conn, org, "invoices", body, render_invoice, base_url)


async def void_invoice(
    conn: Conn, org: uuid.UUID, lago_id: str, *, generate: bool, refund: int, credit: int | None
) -> dict[str, Any]:
    """Void a finalized invoice that is not paid (Lago's rule without a body). With
    `generate` (`generate_credit_note`), any finalized invoice, paid or not, is voided and
    what is left to credit of it goes on one credit note: `refund` (a paid invoice only) and
    `credit` (by default the rest) must add up to it, since the second, voided credit note
    Lago makes of a remainder is not supported."""
    invoice = await invoice_row(conn, org, lago_id, lock=True)
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
            split = credit_notes.Split(credited, refund, 0)
            await credit_notes.issue(conn, org, invoice, chosen, amounts, "other", None, split)
    voided = await existing_row(
        conn,
        "UPDATE invoices SET status = 'voided', voided_at = now(), updated_at = now() "
        "WHERE id = $1 RETURNING *",
        invoice["id"],
    )
    body = await extended_body(conn, voided)
    await webhook_outbox.emit(conn, org, "invoice.voided", voided["id"], body)
    return body


async def update_invoice(
    conn: Conn,
    org: uuid.UUID,
    lago_id: str,
    fields: Fields,
    payment_status: str | None,
    raw_metadata: list[Any] | None,
) -> dict[str, Any]:
    """A new payment status (a finalized invoice's only) and metadata (see `parse_metadata`,
    its errors on `fields`); `invoice.payment_status_updated` when the status changes."""
    invoice = await invoice_row(conn, org, lago_id, lock=True)
    metadata = invoice["metadata"]
    if raw_metadata is not None:
        metadata = parse_metadata(fields, raw_metadata, invoice["metadata"])
        fields.check()
    if payment_status is not None and invoice["status"] == "draft":
        raise ValidationFailed({"payment_status": ["invoice_not_finalized"]})
    changed = payment_status is not None and payment_status != invoice["payment_status"]
    updated = await existing_row(
        conn,
        "UPDATE invoices SET payment_status = coalesce($2, payment_status), metadata = $3, "
        "updated_at = now() WHERE id = $1 RETURNING *",
        invoice["id"],
        payment_status,
        metadata,
    )
    body = await extended_body(conn, updated)
    if changed:
        await webhook_outbox.emit(conn, org, "invoice.payment_status_updated", updated["id"], body)
    return body


async def lose_dispute(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """Mark the payment dispute of a finalized invoice as lost (`payment_dispute_lost_at`)."""
    invoice = await invoice_row(conn, org, lago_id, lock=True)
    if invoice["status"] != "finalized":
        raise NotAllowed(code="not_disputable")
    updated = await existing_row(
        conn,
        "UPDATE invoices SET payment_dispute_lost_at = coalesce(payment_dispute_lost_at, "
        "now()), updated_at = now() WHERE id = $1 RETURNING *",
        invoice["id"],
    )
    return await extended_body(conn, updated)


async def current_invoice(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """The invoice as it is now: a draft is already refreshed by every late usage message of
    its period (the invoicer merges them as they arrive), so nothing is left to recompute."""
    return await extended_body(conn, await invoice_row(conn, org, lago_id))


async def retry_invoice(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """Lago retries the generation of a `failed` invoice; meterflow writes an invoice whole
    or not at all, so no invoice is ever `failed` and none can be retried (405)."""
    await invoice_row(conn, org, lago_id)
    raise NotAllowed(code="invalid_status")
