"""Credit notes' rules and SQL, behind `/api/v1/credit_notes`: create (items per fee, credit and
refund amounts, reason), list (by customer, invoice, dates, statuses), find, update (refund status),
estimate and void; and `/api/v1/customers/{id}/credit_notes`.

Lago's rules: only a finalized invoice takes credit notes; an item credits at most what is
left of its fee; coupons and taxes are prorated per item (`billing.credit_notes`); the
credited, refunded and offset amounts add up to the credit note's total; a refund needs a paid
invoice, an offset an unpaid one and at most what the invoice still asks. What is credited
is the credit note's balance, consumed by the customer's next invoices
(`read_model.credit_notes`), then `consumed`; voiding drops what is left, not an offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from billing.credit_notes import CreditNoteAmounts
from meterflow import webhook_outbox
from meterflow.db import Conn, existing_row
from read_model.customers import customer_body, customer_by_id
from read_model.invoices import amount_due, fee_body, owned_row
from read_model.subscriptions import subscription_by_id
from store import document_files
from store.credit_note_amounts import applied_taxes
from store.documents_pdf import render_credit_note
from web.errors import NotAllowed, ValidationFailed
from web.payload import INVALID, Fields, isos

REASONS = (
    "duplicated_charge",
    "product_unsatisfactory",
    "order_change",
    "order_cancellation",
    "fraudulent_charge",
    "other",
)


REFUND_STATUSES = ("pending", "succeeded", "failed")


CREDIT_STATUSES = ("available", "consumed", "voided")


@dataclass(frozen=True, slots=True)
class Split:
    """Where a credit note's total goes: the customer's balance (`credit`), back to the
    customer (`refund`), off the invoice's amount due (`offset`); cents, adding up to it."""

    credit: int
    refund: int
    offset: int


CREATE_FIELDS = {
    "invoice_id",
    "reason",
    "description",
    "credit_amount_cents",
    "refund_amount_cents",
    "offset_amount_cents",
    "items",
    "metadata",
}


def credit_note_body(
    note: asyncpg.Record,
    invoice: asyncpg.Record,
    customer: asyncpg.Record,
    items: list[asyncpg.Record],
    external_subscription_id: str | None,
) -> dict[str, Any]:
    """The credit note as Lago shows it; `items` are fee rows with the item's `item_id` and
    `item_amount_cents`."""
    external_ids = {
        "customer": customer["external_id"],
        "subscription": external_subscription_id,
    }
    return {
        "lago_id": str(note["id"]),
        "billing_entity_code": None,
        "sequential_id": note["sequential_id"],
        "number": note["number"],
        "lago_invoice_id": str(invoice["id"]),
        "invoice_number": invoice["number"],
        "issuing_date": note["issuing_date"].isoformat(),
        "credit_status": note["credit_status"],
        "refund_status": note["refund_status"],
        "reason": note["reason"],
        "description": note["description"],
        "currency": note["currency"],
        "total_amount_cents": note["total_amount_cents"],
        "taxes_amount_cents": note["taxes_amount_cents"],
        "taxes_rate": float(note["taxes_rate"]),
        "sub_total_excluding_taxes_amount_cents": note["sub_total_excluding_taxes_amount_cents"],
        "balance_amount_cents": note["balance_amount_cents"],
        "credit_amount_cents": note["credit_amount_cents"],
        "refund_amount_cents": note["refund_amount_cents"],
        "offset_amount_cents": note["offset_amount_cents"],
        "coupons_adjustment_amount_cents": note["coupons_adjustment_amount_cents"],
        **isos(note, "created_at", "updated_at", "voided_at"),
        "file_url": None,
        "self_billed": False,
        "customer": customer_body(customer),
        "metadata": note["metadata"],
        "items": [
            {
                "lago_id": str(item["item_id"]),
                "amount_cents": item["item_amount_cents"],
                "amount_currency": note["currency"],
                "fee": fee_body(item, invoice, external_ids),
            }
            for item in items
        ],
        "applied_taxes": [
            {**tax, "lago_credit_note_id": str(note["id"])} for tax in note["applied_taxes"]
        ],
    }


async def note_body(conn: Conn, note: asyncpg.Record) -> dict[str, Any]:
    invoice = await conn.fetchrow("SELECT * FROM invoices WHERE id = $1", note["invoice_id"])
    assert invoice is not None
    customer = await customer_by_id(conn, note["customer_id"])
    rows = await conn.fetch(
        "SELECT i.id AS item_id, i.amount_cents AS item_amount_cents, f.* "
        "FROM credit_note_items i JOIN fees f ON f.id = i.fee_id "
        "WHERE i.credit_note_id = $1 ORDER BY f.position",
        note["id"],
    )
    external_subscription = None
    if invoice["subscription_id"] is not None:
        external_subscription = (await subscription_by_id(conn, invoice["subscription_id"]))[
            "external_id"
        ]
    return credit_note_body(note, invoice, customer, list(rows), external_subscription)


def parse_metadata(fields: Fields) -> dict[str, str | None] | None:
    """Lago's credit note metadata: an object of short strings (or nulls) by key."""
    raw = fields.mapping("metadata")
    if raw is None:
        return None
    if len(raw) > 50 or not all(
        isinstance(k, str)
        and len(k) <= 255
        and (v is None or (isinstance(v, str) and len(v) <= 255))
        for k, v in raw.items()
    ):
        fields.add("metadata", INVALID)
        return None
    return raw


async def issue(
    conn: Conn,
    org: uuid.UUID,
    invoice: asyncpg.Record,
    chosen: list[tuple[asyncpg.Record, int]],
    amounts: CreditNoteAmounts,
    reason: str,
    description: str | None,
    split: Split,
    metadata: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Write a credit note of `chosen` (fee, cents) items on `invoice` (locked by the caller)
    and announce it (`credit_note.created`); 422 when its split does not make its total, a
    refund is asked of an unpaid invoice, or an offset of a paid one or of more than it still
    asks. Returns its API body."""
    if split.credit + split.refund + split.offset != amounts.total_cents:
        raise ValidationFailed({"base": ["does_not_match_item_amounts"]})
    paid = invoice["payment_status"] == "succeeded"
    if split.refund and not paid:
        raise ValidationFailed({"refund_amount_cents": ["cannot_refund_unpaid_invoice"]})
    if split.offset and paid:
        raise ValidationFailed({"offset_amount_cents": ["cannot_offset_paid_invoice"]})
    if split.offset > amount_due(invoice):
        raise ValidationFailed({"offset_amount_cents": ["higher_than_remaining_invoice_amount"]})
    note = await _insert(conn, org, invoice, reason, description, split, amounts)
    if split.offset:
        await conn.execute(
            "UPDATE invoices SET offset_amount_cents = offset_amount_cents + $2, "
            "updated_at = now() WHERE id = $1",
            invoice["id"],
            split.offset,
        )
    if metadata:
        with_metadata = await conn.fetchrow(
            "UPDATE credit_notes SET metadata = $2 WHERE id = $1 RETURNING *",
            note["id"],
            metadata,
        )
        assert with_metadata is not None
        note = with_metadata
    for fee, cents in chosen:
        await conn.execute(
            "INSERT INTO credit_note_items (id, credit_note_id, fee_id, amount_cents, "
            "precise_amount_cents) VALUES ($1, $2, $3, $4::bigint, $4::bigint::numeric)",
            uuid.uuid4(),
            note["id"],
            fee["id"],
            cents,
        )
    body = await note_body(conn, note)
    await webhook_outbox.emit(conn, org, "credit_note.created", note["id"], body)
    return body


async def _insert(
    conn: Conn,
    org: uuid.UUID,
    invoice: asyncpg.Record,
    reason: str,
    description: str | None,
    split: Split,
    amounts: CreditNoteAmounts,
) -> asyncpg.Record:
    customer = await customer_by_id(conn, invoice["customer_id"])
    tz = ZoneInfo(customer["timezone"] or customer["organization_timezone"] or "UTC")
    sequence = await conn.fetchval(
        "SELECT coalesce(max(sequential_id), 0) + 1 FROM credit_notes WHERE invoice_id = $1",
        invoice["id"],
    )
    row = await conn.fetchrow(
        "INSERT INTO credit_notes (id, organization_id, customer_id, invoice_id, sequential_id, "
        "number, reason, description, credit_status, refund_status, currency, issuing_date, "
        "taxes_rate, taxes_amount_cents, precise_taxes_amount_cents, "
        "coupons_adjustment_amount_cents, precise_coupons_adjustment_amount_cents, "
        "sub_total_excluding_taxes_amount_cents, total_amount_cents, credit_amount_cents, "
        "refund_amount_cents, offset_amount_cents, balance_amount_cents, applied_taxes) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
        "$18, $19, $20, $21, $22, $20, $23) "
        "RETURNING *",
        uuid.uuid4(),
        org,
        invoice["customer_id"],
        invoice["id"],
        sequence,
        f"{invoice['number']}-CN{sequence:03d}",
        reason,
        description,
        "available" if split.credit else None,
        "pending" if split.refund else None,
        invoice["currency"],
        datetime.now(UTC).astimezone(tz).date(),
        amounts.taxes_rate,
        amounts.taxes_cents,
        amounts.taxes_precise,
        amounts.coupons_adjustment_cents,
        amounts.coupons_adjustment_precise,
        amounts.sub_total_excluding_taxes_cents,
        amounts.total_cents,
        split.credit,
        split.refund,
        split.offset,
        applied_taxes(invoice, amounts),
    )
    assert row is not None
    return row


async def note_row(
    conn: Conn, org: uuid.UUID, raw_id: str, *, lock: bool = False
) -> asyncpg.Record:
    return await owned_row(conn, "credit_notes", "credit_note", org, raw_id, lock=lock)


async def set_refund_status(
    conn: Conn,
    org: uuid.UUID,
    lago_id: str,
    refund_status: str | None,
    metadata: dict[str, str | None] | None,
) -> dict[str, Any]:
    """A refund status (and metadata, when given) on a credit note that refunds something."""
    note = await note_row(conn, org, lago_id, lock=True)
    if not note["refund_amount_cents"]:
        raise ValidationFailed({"refund_status": ["nothing_to_refund"]})
    updated = await existing_row(
        conn,
        "UPDATE credit_notes SET refund_status = $2, metadata = coalesce($3, metadata), "
        "updated_at = now() WHERE id = $1 RETURNING *",
        note["id"],
        refund_status,
        metadata,
    )
    return await note_body(conn, updated)


async def void_note(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """Void what is left to credit; only a credit note with an available balance can be."""
    note = await note_row(conn, org, lago_id, lock=True)
    if note["credit_status"] != "available":
        raise NotAllowed(code="no_voidable_amount")
    voided = await existing_row(
        conn,
        "UPDATE credit_notes SET credit_status = 'voided', balance_amount_cents = 0, "
        "voided_at = now(), updated_at = now() WHERE id = $1 RETURNING *",
        note["id"],
    )
    return await note_body(conn, voided)


async def change_metadata(
    conn: Conn,
    org: uuid.UUID,
    lago_id: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """Apply `change(current) -> new` to the credit note's metadata; returns the new one."""
    note = await note_row(conn, org, lago_id, lock=True)
    metadata = change(dict(note["metadata"] or {}))
    await conn.execute(
        "UPDATE credit_notes SET metadata = $2, updated_at = now() WHERE id = $1",
        note["id"],
        metadata or {},
    )
    return metadata


async def note_file(conn: Conn, org: uuid.UUID, lago_id: str, base_url: str) -> dict[str, Any]:
    """The credit note's body with the `file_url` of its PDF, rendered and stored the first
    time (announced by `credit_note.generated`)."""
    note = await note_row(conn, org, lago_id, lock=True)
    body = await note_body(conn, note)
    return await document_files.with_file(
        conn, org, "credit_notes", body, render_credit_note, base_url
    )


async def list_credit_notes(
    conn: Conn, org: uuid.UUID, filters: tuple[Any, ...], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of credit notes, newest first, and how many match. `filters`: external
    customer id, invoice number, issued from, issued to, reason, credit status, refund
    status, currency (None: any)."""
    where = (
        "FROM credit_notes cn JOIN customers c ON c.id = cn.customer_id "
        "JOIN invoices i ON i.id = cn.invoice_id WHERE cn.organization_id = $1 "
        "AND ($2::text IS NULL OR c.external_id = $2) AND ($3::text IS NULL OR i.number = $3) "
        "AND ($4::date IS NULL OR cn.issuing_date >= $4) "
        "AND ($5::date IS NULL OR cn.issuing_date <= $5) AND ($6::text IS NULL OR cn.reason = $6) "
        "AND ($7::text IS NULL OR cn.credit_status = $7) "
        "AND ($8::text IS NULL OR cn.refund_status = $8) "
        "AND ($9::text IS NULL OR cn.currency = $9) "
    )
    args = (org, *filters)
    total = await conn.fetchval("SELECT count(*) " + where, *args)
    rows = await conn.fetch(
        "SELECT cn.* " + where + "ORDER BY cn.created_at DESC, cn.id LIMIT $10 OFFSET $11",
        *args,
        limit,
        offset,
    )
    return [await note_body(conn, r) for r in rows], int(total)
