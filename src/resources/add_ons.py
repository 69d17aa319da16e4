"""`/api/v1/add_ons`: requests to `store.add_ons`, Lago JSON back."""

from __future__ import annotations

import uuid

from aiohttp import web

from meterflow import db
from resources import crud
from store import database
from store.add_ons import (
    ADD_ON_COLUMNS,
    add_on,
    add_on_with_taxes,
    check_taxes,
    list_add_ons,
    parse_add_on,
    set_taxes,
)
from web.context import context, organization
from web.errors import NotFound
from web.payload import (
    ok,
    page_params,
    pagination_meta,
    read_wrapped,
)


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "add_on")
    columns = parse_add_on(raw, None)
    async with db.unit_of_work(ctx.db) as conn:
        await check_taxes(conn, org.id, raw)
        await database.claim_code(conn, org.id, "add_on", columns["code"], add_on)
        row = await conn.fetchrow(
            "INSERT INTO add_ons (id, organization_id, name, code, invoice_display_name, "
            "description, amount_cents, amount_currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "RETURNING *",
            uuid.uuid4(),
            org.id,
            *(columns[k] for k in (*ADD_ON_COLUMNS, "amount_currency")),
        )
        assert row is not None
        if columns.get("tax_codes") is not None:
            await set_taxes(conn, org.id, row["id"], columns["tax_codes"])
        body = await add_on_with_taxes(conn, row)
    return ok({"add_on": body})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "add_on")
    async with db.unit_of_work(ctx.db) as conn:
        current = await crud.locked_by_code(conn, request, "add_on", add_on)
        columns = parse_add_on(raw, current)
        await check_taxes(conn, org.id, raw)
        if columns["code"] != current["code"]:
            await database.claim_code(conn, org.id, "add_on", columns["code"], add_on)
        row = await conn.fetchrow(
            "UPDATE add_ons SET name = $2, code = $3, invoice_display_name = $4, description = $5, "
            "amount_cents = $6, amount_currency = $7, updated_at = now() WHERE id = $1 RETURNING *",
            current["id"],
            *(columns[k] for k in (*ADD_ON_COLUMNS, "amount_currency")),
        )
        assert row is not None
        if columns.get("tax_codes") is not None:
            await set_taxes(conn, org.id, row["id"], columns["tax_codes"])
        body = await add_on_with_taxes(conn, row)
    return ok({"add_on": body})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await add_on(conn, org.id, request.match_info["code"])
        if row is None:
            raise NotFound("add_on")
        body = await add_on_with_taxes(conn, row)
    return ok({"add_on": body})


async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        bodies, total = await list_add_ons(conn, org.id, per_page, (page - 1) * per_page)
    return ok({"add_ons": bodies, "meta": pagination_meta(page, per_page, total)})


async def destroy(request: web.Request) -> web.Response:
    """Delete the add-on (soft: issued invoices keep their fees of it)."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "add_on", add_on)
        body = await add_on_with_taxes(conn, row)
        await conn.execute("UPDATE add_ons SET deleted_at = now() WHERE id = $1", row["id"])
    return ok({"add_on": body})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/add_ons", create),
        web.get("/api/v1/add_ons", find_all),
        web.get("/api/v1/add_ons/{code}", find),
        web.put("/api/v1/add_ons/{code}", update),
        web.delete("/api/v1/add_ons/{code}", destroy),
    ]
