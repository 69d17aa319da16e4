"""A credit note's items and amounts: each item names a fee of the invoice and how much of
it to credit, at most what earlier credit notes (not voided) left of it; the amounts follow
`billing.credit_notes` with the taxes as the invoice applied them. Also
`POST /api/v1/credit_notes/estimate`, which answers those amounts without writing."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from billing.credit_notes import CreditedFee, CreditNoteAmounts, credit_note_amounts
from billing.errors import InvalidInvoiceInput
from meterflow.db import Conn
from read_model.invoices import invoice_row
from web.errors import NotAllowed, NotFound, ValidationFailed
from web.payload import INVALID, Fields

_ITEM = {"fee_id", "amount_cents"}


async def _fees(conn: Conn, invoice_id: uuid.UUID) -> dict[str, asyncpg.Record]:
    """The invoice's fees with what earlier credit notes (not voided) credited of each."""
    rows = await conn.fetch(
        "SELECT f.*, coalesce((SELECT sum(i.amount_cents) FROM credit_note_items i "
        "JOIN credit_notes cn ON cn.id = i.credit_note_id "
        "WHERE i.fee_id = f.id AND cn.credit_status IS DISTINCT FROM 'voided'), 0) AS credited "
        "FROM fees f WHERE f.invoice_id = $1 ORDER BY f.position",
        invoice_id,
    )
    return {str(r["id"]): r for r in rows}


async def remaining_items(conn: Conn, invoice_id: uuid.UUID) -> list[tuple[str, int]]:
    """(fee id, cents) of what is left to credit of each fee of the invoice."""
    fees = await _fees(conn, invoice_id)
    left = [(fee_id, fee["amount_cents"] - int(fee["credited"])) for fee_id, fee in fees.items()]
    return [(fee_id, cents) for fee_id, cents in left if cents > 0]


def _credited(fee: asyncpg.Record, rates: dict[str, Decimal]) -> CreditedFee:
    """The fee with its taxes' rates as the invoice applied them."""
    codes = sorted((fee["applied_taxes"] or {}).keys())
    return CreditedFee(
        str(fee["id"]),
        fee["amount_cents"],
        fee["precise_coupons_amount_cents"],
        int(fee["credited"]),
        tuple((code, rates.get(code, Decimal(0))) for code in codes),
    )


def parse_items(fields: Fields, raw: list[Any]) -> list[tuple[str, int]]:
    out = []
    for _, _, entry in fields.each("items", raw, _ITEM):
        fee_id = entry.text("fee_id", required=True)
        cents = entry.integer("amount_cents", required=True, minimum=1)
        if fee_id is not None and cents is not None:
            out.append((fee_id, cents))
    return out


async def amounts_of(
    conn: Conn, invoice: asyncpg.Record, items: list[tuple[str, int]]
) -> tuple[CreditNoteAmounts, list[tuple[asyncpg.Record, int]]]:
    """The credit note's amounts over the invoice's fees; 422 naming the bad item."""
    fees = await _fees(conn, invoice["id"])
    rates = {t["tax_code"]: Decimal(t["tax_rate"]) for t in invoice["applied_taxes"]}
    chosen: list[tuple[asyncpg.Record, int]] = []
    credited: list[tuple[CreditedFee, int]] = []
    errors: dict[str, list[str]] = {}
    for i, (fee_id, cents) in enumerate(items):
        fee = fees.get(fee_id)
        if fee is None:
            raise NotFound("fee")
        credited.append((_credited(fee, rates), cents))
        if cents > credited[-1][0].creditable_cents:
            errors[f"items.{i}.amount_cents"] = ["higher_than_remaining_fee_amount"]
        chosen.append((fee, cents))
    if errors:
        raise ValidationFailed(errors)
    try:
        amounts = credit_note_amounts(credited)
    except InvalidInvoiceInput:
        raise ValidationFailed({"items": [INVALID]}) from None
    return amounts, chosen


def applied_taxes(invoice: asyncpg.Record, amounts: CreditNoteAmounts) -> list[dict[str, Any]]:
    by_code = {t["tax_code"]: t for t in invoice["applied_taxes"]}
    return [
        {
            "lago_id": str(uuid.uuid4()),
            "lago_tax_id": by_code[t.code]["lago_tax_id"],
            "tax_name": by_code[t.code]["tax_name"],
            "tax_code": t.code,
            "tax_rate": float(t.rate),
            "tax_description": by_code[t.code]["tax_description"],
            "base_amount_cents": int(t.base_cents.to_integral_value()),
            "amount_cents": t.amount_cents,
            "amount_currency": invoice["currency"],
        }
        for t in amounts.taxes
        if t.code in by_code
    ]


async def creditable_invoice(conn: Conn, org: uuid.UUID, raw_id: Any) -> asyncpg.Record:
    invoice = await invoice_row(conn, org, str(raw_id or ""), lock=True)
    if invoice["status"] != "finalized":
        raise NotAllowed(code="invalid_invoice_status")
    return invoice
