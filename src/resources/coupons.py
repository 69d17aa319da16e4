"""`/api/v1/coupons`: requests to `store.coupons`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from resources import crud
from store import database
from store.coupons import (
    coupon_applied,
    coupon_body,
    coupon_by_code,
    delete_coupon,
    insert_coupon,
    list_coupons,
    parse_coupon,
    update_coupon,
)
from web.context import context, organization
from web.payload import (
    ok,
    read_wrapped,
)


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    columns = parse_coupon(await read_wrapped(request, "coupon"), None)
    async with db.unit_of_work(ctx.db) as conn:
        await database.claim_code(conn, org.id, "coupon", columns["code"], coupon_by_code)
        row = await insert_coupon(conn, org.id, columns)
    return ok({"coupon": coupon_body(row)})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "coupon")
    async with db.unit_of_work(ctx.db) as conn:
        current = await crud.locked_by_code(conn, request, "coupon", coupon_by_code)
        applied = await coupon_applied(conn, current["id"])
        columns = parse_coupon(raw, current, applied=applied)
        if columns["code"] != current["code"]:
            await database.claim_code(conn, org.id, "coupon", columns["code"], coupon_by_code)
        row = await update_coupon(conn, current["id"], columns)
    return ok({"coupon": coupon_body(row)})


async def find(request: web.Request) -> web.Response:
    return await crud.find_by_code(request, "coupon", coupon_by_code, coupon_body)


async def find_all(request: web.Request) -> web.Response:
    return await crud.find_page(request, "coupons", list_coupons, coupon_body)


async def destroy(request: web.Request) -> web.Response:
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "coupon", coupon_by_code)
        deleted = await delete_coupon(conn, row["id"])
    return ok({"coupon": coupon_body(deleted)})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/coupons", create),
        web.get("/api/v1/coupons", find_all),
        web.get("/api/v1/coupons/{code}", find),
        web.put("/api/v1/coupons/{code}", update),
        web.delete("/api/v1/coupons/{code}", destroy),
    ]
