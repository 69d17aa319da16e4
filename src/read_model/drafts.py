"""The draft to finalized transition both the invoicer's grace-period sweep and the API's
`PUT /api/v1/invoices/{id}/finalize` perform: the customer's wallets pay what they can of the
invoice, and the invoice and the wallets change in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg

from billing.credit_notes import split_credit
from billing.wallet import consume_prepaid, granted_first
from meterflow import webhook_outbox
from meterflow.db import Conn
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


async def consume_wallet(
    conn: Conn, wallet: WalletBalance, cents: int, invoice_id: uuid.UUID
) -> int:
    """Take `cents` from the wallet for the invoice (its granted credits first), if its
    balances are still those read; records the outbound (invoiced) transaction and
    returns the granted part."""
    granted, _ = granted_first(cents, wallet.granted_balance_cents)
    wallet_id = wallet.wallet_id
    status = await conn.execute(
        "UPDATE wallets SET balance_cents = balance_cents - $2, "
        "granted_balance_cents = granted_balance_cents - $3, "
        "consumed_amount_cents = consumed_amount_cents + $2, last_consumed_credit_at = now(), "
        "updated_at = now() WHERE id = $1 AND status = 'active' AND balance_cents = $4 "
        "AND granted_balance_cents = $5",
        uuid.UUID(wallet_id),
        cents,
        granted,
        wallet.balance_cents,
        wallet.granted_balance_cents,
    )
    if status != "UPDATE 1":
        raise CreditsChanged(f"wallet {wallet_id}")
    await conn.execute(
        "INSERT INTO wallet_transactions (id, wallet_id, invoice_id, status, source, "
        "transaction_status, transaction_type, amount_cents, settled_at) "
        "VALUES ($1, $2, $3, 'settled', 'manual', 'invoiced', 'outbound', $4, now())",
        uuid.uuid4(),
        uuid.UUID(wallet_id),
        invoice_id,
        cents,
    )
    return granted


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
        granted = 0
        for wallet, cents in zip(wallets, paid, strict=True):
            if cents:
                terms = _Wallet(
                    str(wallet["id"]), wallet["balance_cents"], wallet["granted_balance_cents"]
                )
                granted += await consume_wallet(conn, terms, cents, invoice_id)
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
