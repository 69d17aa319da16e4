"""`/api/v1/wallet_transactions`: a wallet's top-ups and what invoices took."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn


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


async def list_wallet_transactions(
    conn: Conn, wallet_id: uuid.UUID, filters: dict[str, str | None], limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    where = (
        "WHERE t.wallet_id = $1 AND ($2::text IS NULL OR t.status = $2) "
        "AND ($3::text IS NULL OR t.transaction_status = $3) "
        "AND ($4::text IS NULL OR t.transaction_type = $4) "
    )
    args = (
        wallet_id,
        filters["status"],
        filters["transaction_status"],
        filters["transaction_type"],
    )
    total = await conn.fetchval("SELECT count(*) FROM wallet_transactions t " + where, *args)
    rows = await conn.fetch(
        _WALLET_TRANSACTION + where + "ORDER BY t.created_at DESC, t.id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)
