"""Credit notes as the next invoices consume them: the customer's available credit notes,
oldest first, each paying what it holds until nothing is due, written in the invoice's own
transaction with a check that the balance read is still the balance (else CreditNoteChanged
and the invoice is priced again)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from billing.credit_notes import CreditNoteTerms
from meterflow.db import Conn

# The customer's (SQL `{customer}`) available credit notes as a JSON array, oldest first:
# a subquery of the invoicer's single read of everything an invoice needs.
AVAILABLE_JSON = (
    "SELECT coalesce(json_agg(json_build_object('id', cn.id, 'currency', cn.currency, "
    "'balance_cents', cn.balance_amount_cents) ORDER BY cn.created_at, cn.id), '[]') "
    "FROM credit_notes cn WHERE cn.customer_id = {customer} AND cn.credit_status = 'available' "
    "AND cn.balance_amount_cents > 0"
)


class CreditNoteChanged(Exception):
    """A credit note was consumed or voided between reading it and using it."""


def from_json(rows: Sequence[dict[str, Any]]) -> tuple[CreditNoteTerms, ...]:
    return tuple(CreditNoteTerms(str(r["id"]), r["currency"], r["balance_cents"]) for r in rows)


async def available(conn: Conn, customer_id: uuid.UUID) -> tuple[CreditNoteTerms, ...]:
    """The customer's available credit notes, locked until the transaction ends (so that
    `consume` cannot find them changed)."""
    await conn.execute(
        "SELECT 1 FROM credit_notes WHERE customer_id = $1 AND credit_status = 'available' "
        "FOR UPDATE",
        customer_id,
    )
    rows = await conn.fetchval(AVAILABLE_JSON.format(customer="$1"), customer_id)
    return from_json(rows)


async def consume(
    conn: Conn, uses: Sequence[tuple[CreditNoteTerms, int]], invoice_id: uuid.UUID
) -> None:
    """Take each use off its credit note (consumed once nothing is left) and record which
    invoice took it; CreditNoteChanged when a balance is no longer the one read."""
    for note, cents in uses:
        status = await conn.execute(
            "UPDATE credit_notes SET balance_amount_cents = balance_amount_cents - $2, "
            "credit_status = CASE WHEN balance_amount_cents = $2 THEN 'consumed' "
            "ELSE 'available' END, updated_at = now() "
            "WHERE id = $1 AND credit_status = 'available' AND balance_amount_cents = $3",
            uuid.UUID(note.credit_note_id),
            cents,
            note.balance_cents,
        )
        if status != "UPDATE 1":
            raise CreditNoteChanged(note.credit_note_id)
        await conn.execute(
            "INSERT INTO credit_note_uses (credit_note_id, invoice_id, amount_cents) "
            "VALUES ($1, $2, $3)",
            uuid.UUID(note.credit_note_id),
            invoice_id,
            cents,
        )
