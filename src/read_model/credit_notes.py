"""Credit notes as the next invoices consume them: the customer's available credit notes,
oldest first, each paying what it holds until nothing is due, written in the invoice's own
transaction with a check that the balance read is still the balance (else CreditNoteChanged
and the invoice is priced again)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from billing.credit_notes import CreditNoteTerms
from meterflow.db import Conn, json_recordset

# The customer's (SQL `{customer}`) available credit notes as a JSON array, oldest first:
# a subquery of the invoicer's single read of everything an invoice needs.
AVAILABLE_JSON = (
    "SELECT coalesce(json_agg(json_build_object('id', cn.id, 'currency', cn.currency, "
    "'balance_cents', cn.balance_amount_cents) ORDER BY cn.created_at, cn.id), '[]') "
    "FROM credit_notes cn WHERE cn.customer_id = {customer} AND cn.credit_status = 'available' "
    "AND cn.balance_amount_cents > 0"
)


# What credit notes pay (`{uses}`: a recordset `u` of USE_COLUMNS): each note whose balance
# is still the one read (`balance`) less what it pays (consumed once nothing is left), and a
# use recording which invoice took it. The CTEs `credit_note` (a row per note taken) and
# `credit_note_use` of the invoicer's batch write and of `consume`.
USE_COLUMNS = (("id", "uuid"), ("invoice_id", "uuid"), ("cents", "bigint"), ("balance", "bigint"))
CONSUMED = """credit_note AS (
    UPDATE credit_notes cn SET balance_amount_cents = cn.balance_amount_cents - u.cents,
        credit_status = CASE WHEN cn.balance_amount_cents = u.cents THEN 'consumed'
            ELSE 'available' END,
        updated_at = now()
    FROM {uses}
    WHERE cn.id = u.id AND cn.credit_status = 'available' AND cn.balance_amount_cents = u.balance
    RETURNING cn.id, u.invoice_id, u.cents
), credit_note_use AS (
    INSERT INTO credit_note_uses (credit_note_id, invoice_id, amount_cents)
    SELECT id, invoice_id, cents FROM credit_note
    RETURNING 1
)"""
_CONSUME = (
    f"WITH {CONSUMED.format(uses=json_recordset(USE_COLUMNS, 1, 'u'))} "
    "SELECT count(*) FROM credit_note"
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
    if not uses:
        return
    rows = [
        {
            "id": note.credit_note_id,
            "invoice_id": str(invoice_id),
            "cents": cents,
            "balance": note.balance_cents,
        }
        for note, cents in uses
    ]
    if await conn.fetchval(_CONSUME, orjson.dumps(rows).decode()) != len(rows):
        raise CreditNoteChanged(", ".join(note.credit_note_id for note, _ in uses))
