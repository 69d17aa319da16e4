"""`/api/v1/taxes`: requests to `store.taxes`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from resources import crud
from store import database
from store.taxes import (
    delete_tax,
    insert_tax,
    list_taxes,
    tax_body,
    tax_by_code,
    tax_fields,
    update_tax,
)
from web.context import context, organization
from web.payload import ok, read_wrapped


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    columns = tax_fields(await read_wrapped(request, "tax"), None)
    async with db.unit_of_work(ctx.db) as conn:
        await database.claim_code(conn, org.id, "tax", columns["code"], tax_by_code)
        row = await insert_tax(conn, org.id, columns)
    return ok({"tax": tax_body(row)})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "tax")
    async with db.unit_of_work(ctx.db) as conn:
        current = await crud.locked_by_code(conn, request, "tax", tax_by_code)
        columns = tax_fields(raw, current)
        if columns["code"] != current["code"]:
            await database.claim_code(conn, org.id, "tax", columns["code"], tax_by_code)
        row = await update_tax(conn, current["id"], columns)
    return ok({"tax": tax_body(row)})


async def find(request: web.Request) -> web.Response:
    return await crud.find_by_code(request, "tax", tax_by_code, tax_body)


async def find_all(request: web.Request) -> web.Response:
    return await crud.find_page(request, "taxes", list_taxes, tax_body)


async def destroy(request: web.Request) -> web.Response:
    """Delete the tax; customers and plans lose it, issued invoices keep their snapshot."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "tax", tax_by_code)
        await delete_tax(conn, row["id"])
    return ok({"tax": tax_body(row)})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/taxes", create),
        web.get("/api/v1/taxes", find_all),
        web.get("/api/v1/taxes/{code}", find),
        web.put("/api/v1/taxes/{code}", update),
        web.delete("/api/v1/taxes/{code}", destroy),
    ]
