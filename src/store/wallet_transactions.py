"""Wallet transactions' rules and SQL: a wallet's top-ups and what invoices took."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from billing.money import minor_units
from billing.wallet import cents_to_credits, credits_to_cents
from meterflow.db import Conn
from store import database, wallets
from web.errors import NotFound, ValidationFailed
from web.payload import iso, object_id


async def add_wallet_transaction(
    conn: Conn, wallet_id: uuid.UUID, columns: dict[str, Any]
) -> uuid.UUID:
    """Record a settled transaction and move the balance with it, in the caller's
    transaction: inbound adds (granted credits to the granted part too), outbound takes
    (from the granted part first, the order in which credits are consumed)."""
    amount = columns["amount_cents"]
    if columns["transaction_type"] == "inbound":
        granted = amount if columns["transaction_status"] == "granted" else 0
        await conn.execute(
            "UPDATE wallets SET balance_cents = balance_cents + $2, "
            "granted_balance_cents = granted_balance_cents + $3, updated_at = now() "
            "WHERE id = $1",
            wallet_id,
            amount,
            granted,
        )
    else:
        await conn.execute(
            "UPDATE wallets SET balance_cents = balance_cents - $2, "
            "granted_balance_cents = granted_balance_cents - least(granted_balance_cents, $2), "
            "updated_at = now() WHERE id = $1",
            wallet_id,
            amount,
        )
    transaction_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO wallet_transactions (id, wallet_id, status, source, transaction_status, "
        "transaction_type, amount_cents, name, metadata, settled_at) "
        "VALUES ($1, $2, 'settled', 'manual', $3, $4, $5, $6, $7, now())",
        transaction_id,
        wallet_id,
        columns["transaction_status"],
        columns["transaction_type"],
        columns["amount_cents"],
        columns["name"],
        columns["metadata"],
    )
    return transaction_id


_WALLET_TRANSACTION = (
    "SELECT t.*, w.rate_amount, w.currency, w.priority, w.organization_id "
    "FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id "
)


async def wallet_transactions_by_ids(conn: Conn, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    # In the order given: transactions made together share created_at (one transaction).
    rows = await conn.fetch(
        _WALLET_TRANSACTION
        + "WHERE t.id = ANY($1::uuid[]) ORDER BY array_position($1::uuid[], t.id)",
        ids,
    )
    return list(rows)


async def wallet_transaction_of(
    conn: Conn, org: uuid.UUID, transaction_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _WALLET_TRANSACTION + "WHERE w.organization_id = $1 AND t.id = $2", org, transaction_id
    )


TRANSACTION_FIELDS = {
    "wallet_id",
    "paid_credits",
    "granted_credits",
    "voided_credits",
    "invoice_requires_successful_payment",
    "metadata",
    "name",
    "ignore_paid_top_up_limits",
    "purchase_order_number",
    "payment_method",
    "invoice_custom_section",
}


def transaction_body(row: asyncpg.Record) -> dict[str, Any]:
    cur: str = row["currency"]
    amount = Decimal(row["amount_cents"]).scaleb(-minor_units(cur))
    return {
        "lago_id": str(row["id"]),
        "lago_wallet_id": str(row["wallet_id"]),
        "lago_invoice_id": str(row["invoice_id"]) if row["invoice_id"] else None,
        "lago_credit_note_id": None,
        "lago_voided_invoice_id": None,
        "status": row["status"],
        "source": row["source"],
        "transaction_status": row["transaction_status"],
        "transaction_type": row["transaction_type"],
        "amount": wallets.credits_text(amount),
        "credit_amount": wallets.credits_text(
            cents_to_credits(row["amount_cents"], row["rate_amount"], cur)
        ),
        "remaining_amount_cents": None,
        "remaining_credit_amount": None,
        "priority": row["priority"],
        "invoice_requires_successful_payment": False,
        "metadata": row["metadata"],
        "name": row["name"],
        "settled_at": iso(row["settled_at"]),
        "failed_at": None,
        "created_at": iso(row["created_at"]),
        "applied_invoice_custom_sections": [],
        "payment_method": None,
        "purchase_order_number": None,
    }


async def settle_credits(
    conn: Conn,
    wallet: asyncpg.Record,
    credits: dict[str, Decimal | None],
    name: str | None,
    metadata: list[dict[str, str]] | None,
) -> list[uuid.UUID]:
    """Settle the paid, granted and voided credits on the wallet (in that order)."""
    out = []
    for key, status, direction in (
        ("paid_credits", "purchased", "inbound"),
        ("granted_credits", "granted", "inbound"),
        ("voided_credits", "voided", "outbound"),
    ):
        amount = credits.get(key)
        if not amount:
            continue
        cents = credits_to_cents(amount, wallet["rate_amount"], wallet["currency"])
        if direction == "outbound" and cents > wallet["balance_cents"]:
            raise ValidationFailed({key: ["insufficient_credits"]})
        out.append(
            await add_wallet_transaction(
                conn,
                wallet["id"],
                {
                    "transaction_status": status,
                    "transaction_type": direction,
                    "amount_cents": cents,
                    "name": name,
                    "metadata": metadata or [],
                },
            )
        )
    return out


async def top_up(
    conn: Conn,
    org: uuid.UUID,
    wallet_id: uuid.UUID,
    credits: dict[str, Decimal | None],
    name: str | None,
    metadata: list[dict[str, str]] | None,
) -> list[dict[str, Any]]:
    """Paid, granted or voided credits on an active wallet (locked); the transactions."""
    wallet = await wallets.wallet_by_id(conn, org, wallet_id, lock=True)
    if (
        wallet is None
        or wallet["status"] != "active"
        or wallets.is_expired(wallet, datetime.now(UTC))
    ):
        raise NotFound("wallet")
    ids = await settle_credits(conn, wallet, credits, name, metadata)
    return [transaction_body(r) for r in await wallet_transactions_by_ids(conn, ids)]


async def transaction_of(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """One of the organization's wallet transactions, or `wallet_transaction_not_found`."""
    transaction_id = object_id(lago_id, "wallet_transaction")
    row = await wallet_transaction_of(conn, org, transaction_id)
    if row is None:
        raise NotFound("wallet_transaction")
    return transaction_body(row)


WALLET_TRANSACTIONS = database.Listing(
    _WALLET_TRANSACTION,
    "t.wallet_id = {}",
    {
        "status": "t.status = {}",
        "transaction_status": "t.transaction_status = {}",
        "transaction_type": "t.transaction_type = {}",
    },
    "t.created_at DESC, t.id",
)

# A page of a wallet's transactions (its id the owner) as the API shows them.
list_wallet_transactions = database.pager(WALLET_TRANSACTIONS, database.each(transaction_body))
