"""`/api/v1/wallet_transactions`: requests to `store.wallet_transactions`, Lago JSON back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web

from meterflow import db
from resources import crud
from resources.wallets import wallet_of_request
from store import wallet_transactions, wallets
from web.context import context, organization
from web.errors import NotFound
from web.payload import Fields, ok, read_wrapped


async def top_up(request: web.Request) -> web.Response:
    """Paid, granted or voided credits on an active wallet; answers the transactions."""
    ctx, org = context(request), organization(request)
    fields = Fields(
        await read_wrapped(request, "wallet_transaction"), wallet_transactions.TRANSACTION_FIELDS
    )
    raw_id = fields.text("wallet_id", required=True, max_length=64)
    credits = {
        k: fields.decimal(k, low=Decimal(0), high=wallets.MAX_AMOUNT)
        for k in ("paid_credits", "granted_credits", "voided_credits")
    }
    name = fields.text("name")
    metadata = wallets.parse_metadata(fields, "metadata")
    fields.check()
    try:
        wallet_id = uuid.UUID(raw_id or "")
    except ValueError:
        raise NotFound("wallet") from None
    async with db.unit_of_work(ctx.db) as conn:
        wallet = await wallets.wallet_by_id(conn, org.id, wallet_id, lock=True)
        if (
            wallet is None
            or wallet["status"] != "active"
            or wallets.is_expired(wallet, datetime.now(UTC))
        ):
            raise NotFound("wallet")
        ids = await wallet_transactions.settle_credits(conn, wallet, credits, name, metadata)
        rows = await wallet_transactions.wallet_transactions_by_ids(conn, ids)
    return ok({"wallet_transactions": [wallet_transactions.transaction_body(r) for r in rows]})


async def find_transaction(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    try:
        transaction_id = uuid.UUID(request.match_info["lago_id"])
    except ValueError:
        raise NotFound("wallet_transaction") from None
    async with ctx.db.acquire() as conn:
        row = await wallet_transactions.wallet_transaction_of(conn, org.id, transaction_id)
    if row is None:
        raise NotFound("wallet_transaction")
    return ok({"wallet_transaction": wallet_transactions.transaction_body(row)})


async def find_transactions(request: web.Request) -> web.Response:
    filters = {
        name: request.query.get(name) or None
        for name in ("status", "transaction_status", "transaction_type")
    }
    async with context(request).db.acquire() as conn:
        wallet = await wallet_of_request(conn, request)
    return await crud.answer_page(
        request,
        "wallet_transactions",
        wallet_transactions.list_wallet_transactions,
        filters,
        owner=wallet["id"],
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/wallets/{lago_id}/wallet_transactions", find_transactions),
        web.post("/api/v1/wallet_transactions", top_up),
        web.get("/api/v1/wallet_transactions/{lago_id}", find_transaction),
    ]
