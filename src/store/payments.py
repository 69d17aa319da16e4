"""Manual payments' rules and SQL, behind `/api/v1/payments` and
`/api/v1/customers/{id}/payments`: money paid outside meterflow, recorded against one
finalized, unpaid invoice, at most what it still asks (`read_model.invoices.amount_due`).
The invoice's paid amount grows with each; when nothing is left due its payment status
becomes `succeeded` (`invoice.payment_status_updated`)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model.invoices import (
    AMOUNT_DUE_SQL,
    amount_due,
    extended_body,
    invoice_row,
    owned_row,
)
from web.context import IngestContext, Organization
from web.errors import ValidationFailed
from web.payload import Fields, iso

CREATE_FIELDS = {"invoice_id", "amount_cents", "reference", "paid_at"}

_SELECT = (
    "SELECT p.*, c.external_id AS external_customer_id, i.number AS invoice_number "
    "FROM payments p JOIN customers c ON c.id = p.customer_id "
    "JOIN invoices i ON i.id = p.invoice_id "
)


def payment_body(row: asyncpg.Record) -> dict[str, Any]:
    """The payment as Lago shows a manual one."""
    return {
        "lago_id": str(row["id"]),
        "lago_customer_id": str(row["customer_id"]),
        "external_customer_id": row["external_customer_id"],
        "invoice_ids": [str(row["invoice_id"])],
        "invoice_numbers": [row["invoice_number"]],
        "lago_payable_id": str(row["invoice_id"]),
        "payable_type": "Invoice",
        "amount_cents": row["amount_cents"],
        "amount_currency": row["currency"],
        "status": "succeeded",
        "payment_status": "succeeded",
        "type": "manual",
        "reference": row["reference"],
        "paid_at": row["paid_at"].isoformat(),
        "payment_provider_code": None,
        "payment_provider_type": None,
        "external_payment_id": None,
        "provider_payment_id": None,
        "provider_customer_id": None,
        "payment_method_id": None,
        "next_action": {},
        "created_at": iso(row["created_at"]),
    }


async def _body_of(conn: Conn, payment_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(_SELECT + "WHERE p.id = $1", payment_id)
    assert row is not None
    return payment_body(row)


async def create_payment(
    ctx: IngestContext, org: Organization, raw: dict[str, Any]
) -> dict[str, Any]:
    """Record a payment from Lago's input object (`invoice_id`, `amount_cents`, `reference`,
    `paid_at`, by default today); returns its API body."""
    fields = Fields(raw, CREATE_FIELDS)
    invoice_id = fields.text("invoice_id", required=True)
    cents = fields.integer("amount_cents", required=True, minimum=1)
    reference = fields.text("reference", required=True)
    raw_paid_at = fields.text("paid_at")
    paid_at = datetime.now(UTC).date()
    if raw_paid_at is not None:
        try:
            paid_at = date.fromisoformat(raw_paid_at)
        except ValueError:
            fields.add("paid_at", "invalid_date")
    fields.check()
    assert invoice_id is not None and cents is not None and reference is not None
    async with db.unit_of_work(ctx.db) as conn:
        return await record(conn, org.id, invoice_id, cents, reference, paid_at)


async def record(
    conn: Conn, org: uuid.UUID, invoice_id: str, cents: int, reference: str, paid_at: date
) -> dict[str, Any]:
    """Record a payment of `cents` on the invoice; 422 naming the field when the invoice is
    not finalized, is already paid, or asks less than that."""
    invoice = await invoice_row(conn, org, invoice_id, lock=True)
    if invoice["status"] != "finalized":
        raise ValidationFailed({"invoice_id": ["invoice_not_finalized"]})
    if invoice["payment_status"] == "succeeded":
        raise ValidationFailed({"invoice_id": ["invoice_already_paid"]})
    due = amount_due(invoice)
    if cents > due:
        raise ValidationFailed({"amount_cents": ["higher_than_remaining_invoice_amount"]})
    payment_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO payments (id, organization_id, customer_id, invoice_id, amount_cents, "
        "currency, reference, paid_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        payment_id,
        org,
        invoice["customer_id"],
        invoice["id"],
        cents,
        invoice["currency"],
        reference,
        paid_at,
    )
    updated = await conn.fetchrow(
        "UPDATE invoices SET paid_amount_cents = paid_amount_cents + $2, payment_status = "
        "CASE WHEN $3 THEN 'succeeded' ELSE payment_status END, updated_at = now() "
        "WHERE id = $1 RETURNING *",
        invoice["id"],
        cents,
        cents == due,
    )
    assert updated is not None
    if updated["payment_status"] != invoice["payment_status"]:
        body = await extended_body(conn, updated)
        await webhook_outbox.emit(conn, org, "invoice.payment_status_updated", updated["id"], body)
    return await _body_of(conn, payment_id)


async def payable_invoices(
    conn: Conn, org: uuid.UUID, customer_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The customer's finalized invoices that still ask something (id, number, currency,
    due), oldest first: what a payment can be recorded against."""
    return await conn.fetch(
        "SELECT id, number, currency, due FROM (SELECT i.id, i.number, i.currency, "
        f"i.issuing_date, {AMOUNT_DUE_SQL} AS due FROM invoices i "
        "WHERE i.organization_id = $1 AND i.customer_id = $2 AND i.status = 'finalized' "
        "AND i.payment_status <> 'succeeded') payable WHERE due > 0 ORDER BY issuing_date, number",
        org,
        customer_id,
    )


async def find(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    row = await owned_row(conn, "payments", "payment", org, lago_id)
    return await _body_of(conn, row["id"])


async def list_payments(
    conn: Conn,
    org: uuid.UUID,
    filters: tuple[str | None, uuid.UUID | None],
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of payments, newest first, and how many match; `filters`: external customer
    id and invoice id (None: any)."""
    where = (
        "WHERE p.organization_id = $1 AND ($2::text IS NULL OR c.external_id = $2) "
        "AND ($3::uuid IS NULL OR p.invoice_id = $3) "
    )
    total = await conn.fetchval(
        "SELECT count(*) FROM payments p JOIN customers c ON c.id = p.customer_id " + where,
        org,
        *filters,
    )
    rows = await conn.fetch(
        _SELECT + where + "ORDER BY p.created_at DESC, p.id LIMIT $4 OFFSET $5",
        org,
        *filters,
        limit,
        offset,
    )
    return [payment_body(r) for r in rows], int(total)
