"""`/api/v1/wallet_transactions`: requests to `store.wallet_transactions`, Lago JSON back."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.wallets import wallet_of_request
from store import wallet_transactions, wallets
from web.context import context
from web.payload import Fields, object_id, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/wallet_transactions")
async def top_up(request: web.Request) -> web.Response:
    """Paid, granted or voided credits on an active wallet; answers the transactions."""
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
    wallet_id = object_id(raw_id, "wallet")

    async def step(conn: Conn, org: uuid.UUID) -> list[dict[str, Any]]:
        return await wallet_transactions.top_up(conn, org, wallet_id, credits, name, metadata)

    return await crud.answer(request, "wallet_transactions", step)


@ROUTES.get("/api/v1/wallet_transactions/{lago_id}")
async def find_transaction(request: web.Request) -> web.Response:
    step = wallet_transactions.transaction_of
    return await crud.by_lago_id(request, "wallet_transaction", step, write=False)


@ROUTES.get("/api/v1/wallets/{lago_id}/wallet_transactions")
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
