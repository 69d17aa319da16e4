"""The draft to finalized transition both the invoicer's grace-period sweep and the API's
`PUT /api/v1/invoices/{id}/finalize` perform: the customer's wallets pay what they can of the
invoice, and the invoice and the wallets change in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
import orjson

from billing.credit_notes import split_credit
from billing.wallet import consume_prepaid, granted_first
from meterflow import webhook_outbox
from meterflow.db import Conn, json_recordset, new_ids
from read_model import credit_notes


class CreditsChanged(Exception):
    """A coupon or wallet changed between reading it and writing the invoice that uses
    it (another invoice of the customer, an API call): roll back and price again."""


class WalletBalance(Protocol):
    """A wallet's balances as read before they are used (`invoicing.pricing.WalletTerms`)."""

    @property
    def wallet_id(self) -> str: ...

    @property
    def balance_cents(self) -> int: ...

    @property
    def granted_balance_cents(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Wallet:
    wallet_id: str
    balance_cents: int
    granted_balance_cents: int


# What wallets pay (`{uses}`: a recordset `u` of USE_COLUMNS, `granted` the part of `cents`
# taken from granted credits): each wallet whose balances are still those read, less what it
# pays, and an outbound (invoiced) transaction for it, whose id the writer drew
# (`db.new_ids`: the embedded Postgres's gen_random_uuid() costs three system calls). The
# CTEs `wallet` (a row per wallet taken) and `wallet_transaction` of the invoicer's batch
# write and of `consume_wallets`.
USE_COLUMNS = (
    ("id", "uuid"),
    ("invoice_id", "uuid"),
    ("cents", "bigint"),
    ("granted", "bigint"),
    ("balance", "bigint"),
    ("granted_balance", "bigint"),
    ("transaction_id", "uuid"),
)
CONSUMED = """wallet AS (
    UPDATE wallets w SET balance_cents = w.balance_cents - u.cents,
        granted_balance_cents = w.granted_balance_cents - u.granted,
        consumed_amount_cents = w.consumed_amount_cents + u.cents,
        last_consumed_credit_at = now(), updated_at = now()
    FROM {uses}
    WHERE w.id = u.id AND w.status = 'active' AND w.balance_cents = u.balance
        AND w.granted_balance_cents = u.granted_balance
    RETURNING w.id, u.invoice_id, u.cents, u.transaction_id
), wallet_transaction AS (
    INSERT INTO wallet_transactions (id, wallet_id, invoice_id, status, source,
        transaction_status, transaction_type, amount_cents, settled_at)
    SELECT transaction_id, id, invoice_id, 'settled', 'manual', 'invoiced', 'outbound',
        cents, now()
    FROM wallet
    RETURNING 1
)"""
_CONSUME = (
    f"WITH {CONSUMED.format(uses=json_recordset(USE_COLUMNS, 1, 'u'))} SELECT count(*) FROM wallet"
)


async def consume_wallets(
    conn: Conn, uses: list[tuple[WalletBalance, int]], invoice_id: uuid.UUID
) -> int:
    """Take each use's cents from its wallet for the invoice (granted credits first), if its
    balances are still those read (else CreditsChanged); records the outbound (invoiced)
    transactions and returns the granted part of them all."""
    granted = [granted_first(cents, wallet.granted_balance_cents)[0] for wallet, cents in uses]
    rows = [
        {
            "id": wallet.wallet_id,
            "invoice_id": str(invoice_id),
            "cents": cents,
            "granted": part,
            "balance": wallet.balance_cents,
            "granted_balance": wallet.granted_balance_cents,
            "transaction_id": transaction_id,
        }
        for (wallet, cents), part, transaction_id in zip(
            uses, granted, new_ids(len(uses)), strict=True
        )
    ]
    if rows and await conn.fetchval(_CONSUME, orjson.dumps(rows).decode()) != len(rows):
        raise CreditsChanged("wallets " + ", ".join(wallet.wallet_id for wallet, _ in uses))
    return sum(granted)


async def due_drafts(conn: Conn, now: datetime) -> list[uuid.UUID]:
    """The drafts whose grace period has ended."""
    rows = await conn.fetch(
        "SELECT id FROM invoices WHERE status = 'draft' AND grace_until <= $1 ORDER BY grace_until",
        now,
    )
    return [r["id"] for r in rows]


async def finalize_draft(conn: Conn, invoice_id: uuid.UUID, now: datetime) -> asyncpg.Record | None:
    """Finalize one draft in one transaction: the customer's available credit notes (oldest
    first), then its wallets in the invoice's currency (priority, then oldest) pay what they
    can of its total, and the invoice, the credit notes and the wallets change together.
    None when it is not (or no longer) a draft, so a second finalization consumes nothing."""
    async with conn.transaction():
        invoice = await conn.fetchrow(
            "SELECT * FROM invoices WHERE id = $1 AND status = 'draft' FOR UPDATE", invoice_id
        )
        if invoice is None:
            return None
        wallets = await conn.fetch(
            "SELECT id, currency, balance_cents, granted_balance_cents FROM wallets "
            "WHERE customer_id = $1 AND currency = $2 "
            "AND status = 'active' AND balance_cents > 0 "
            "AND (expiration_at IS NULL OR expiration_at > $3) "
            "ORDER BY priority, created_at, id FOR UPDATE",
            invoice["customer_id"],
            invoice["currency"],
            now,
        )
        due = (
            invoice["sub_total_including_taxes_amount_cents"]
            - invoice["credit_notes_amount_cents"]
            - invoice["prepaid_credit_amount_cents"]
        )
        # Credit notes first (oldest first), then wallets, as for an invoice issued final.
        notes = await credit_notes.available(conn, invoice["customer_id"])
        credited = split_credit(due, notes, invoice["currency"])
        await credit_notes.consume(conn, credited, invoice_id)
        due -= sum(cents for _, cents in credited)
        paid = consume_prepaid(due, [w["balance_cents"] for w in wallets])
        uses: list[tuple[WalletBalance, int]] = [
            (_Wallet(str(w["id"]), w["balance_cents"], w["granted_balance_cents"]), cents)
            for w, cents in zip(wallets, paid, strict=True)
            if cents
        ]
        granted = await consume_wallets(conn, uses, invoice_id)
        row = await conn.fetchrow(
            "UPDATE invoices SET status = 'finalized', grace_until = NULL, finalized_at = $2, "
            "updated_at = $2, prepaid_credit_amount_cents = prepaid_credit_amount_cents + $3, "
            "credit_notes_amount_cents = credit_notes_amount_cents + $5, "
            "prepaid_granted_credit_amount_cents = prepaid_granted_credit_amount_cents + $4, "
            "prepaid_purchased_credit_amount_cents = "
            "prepaid_purchased_credit_amount_cents + $3 - $4, "
            "total_amount_cents = total_amount_cents - $3 - $5 WHERE id = $1 RETURNING *",
            invoice_id,
            now,
            sum(paid),
            granted,
            sum(cents for _, cents in credited),
        )
        assert row is not None
        await webhook_outbox.emit(conn, row["organization_id"], "invoice.created", invoice_id)
        return row
