"""`/api/v1/wallets`: requests to `store.wallets`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.metadata import Change, Metadata, metadata_routes
from store import customers, wallets
from web.context import context, organization
from web.errors import NotFound
from web.payload import object_id, ok, read_wrapped

ROUTES = web.RouteTableDef()
OF_CUSTOMER = "/api/v1/customers/{external_customer_id}/wallets"


@ROUTES.post("/api/v1/wallets")
@ROUTES.post(OF_CUSTOMER)
async def create(request: web.Request) -> web.Response:
    """A wallet for the body's customer, or on a customer's path for that customer."""
    raw = await read_wrapped(request, "wallet")
    external_customer_id = request.match_info.get("external_customer_id")
    body = await wallets.create_wallet(
        context(request), organization(request), raw, external_customer_id
    )
    return ok({"wallet": body})


async def wallet_of_request(
    conn: Conn, request: web.Request, *, lock: bool = False
) -> asyncpg.Record:
    """The wallet the path names: by lago_id, or by customer and code."""
    org = organization(request)
    if "lago_id" in request.match_info:
        wallet_id = object_id(request.match_info["lago_id"], "wallet")
        row = await wallets.wallet_by_id(conn, org.id, wallet_id, lock=lock)
    else:
        customer = await customers.customer_by_external_id(
            conn, org.id, request.match_info["external_customer_id"]
        )
        if customer is None:
            raise NotFound("customer")
        row = await wallets.wallet_by_code(
            conn, customer["id"], request.match_info["code"], lock=lock
        )
    if row is None:
        raise NotFound("wallet")
    return row


@ROUTES.get("/api/v1/wallets/{lago_id}")
@ROUTES.get(OF_CUSTOMER + "/{code}")
async def find(request: web.Request) -> web.Response:
    async with context(request).db.acquire() as conn:
        row = await wallet_of_request(conn, request)
    return ok({"wallet": wallets.wallet_body(row)})


@ROUTES.put("/api/v1/wallets/{lago_id}")
@ROUTES.put(OF_CUSTOMER + "/{code}")
async def update(request: web.Request) -> web.Response:
    """Change the name, code, priority, expiry or metadata (Lago's editable fields)."""
    fields, given = wallets.parse_update(await read_wrapped(request, "wallet"))

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        wallet = await wallet_of_request(conn, request, lock=True)
        return await wallets.change_wallet(conn, org, wallet, fields, given)

    return await crud.answer(request, "wallet", step)


@ROUTES.delete("/api/v1/wallets/{lago_id}")
@ROUTES.delete(OF_CUSTOMER + "/{code}")
async def terminate(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        return await wallets.end_wallet(
            conn, org, await wallet_of_request(conn, request, lock=True)
        )

    return await crud.answer(request, "wallet", step)


@ROUTES.get("/api/v1/wallets")
@ROUTES.get(OF_CUSTOMER)
async def find_all(request: web.Request) -> web.Response:
    filters = {
        "external_customer_id": crud.listed_customer(request),
        "currency": request.query.get("currency") or None,
    }
    return await crud.answer_page(request, "wallets", wallets.list_wallets, filters)


async def _change_metadata(
    conn: Conn, org: uuid.UUID, request: web.Request, change: Change
) -> Metadata | None:
    return await wallets.change_metadata(
        conn, await wallet_of_request(conn, request, lock=True), change
    )


metadata_routes(ROUTES, ("/api/v1/wallets/{lago_id}", OF_CUSTOMER + "/{code}"), _change_metadata)
