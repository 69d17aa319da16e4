"""`/api/v1/customers`: requests to `store.customers`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from read_model.customers import customer_body
from resources import crud
from store import customers
from web.context import context, organization
from web.errors import NotFound
from web.payload import ok

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/customers")
async def upsert(request: web.Request) -> web.Response:
    """Create or update; `tax_codes`, when sent, become the customer's taxes (replacing
    the previous ones; an empty list removes them; an unknown code is 404 `tax_not_found`)."""
    return await crud.created(request, "customer", customers.save_customer)


@ROUTES.get("/api/v1/customers/{external_id}")
async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await customers.customer_by_external_id(
            conn, org.id, request.match_info["external_id"]
        )
        if row is None:
            raise NotFound("customer")
        body = (await customers.with_taxes(conn, [customer_body(row)]))[0]
    return ok({"customer": body})


@ROUTES.get("/api/v1/customers")
async def find_all(request: web.Request) -> web.Response:
    filters = {"search_term": request.query.get("search_term")}
    return await crud.answer_page(request, "customers", customers.customer_page, filters)


@ROUTES.delete("/api/v1/customers/{external_id}")
async def destroy(request: web.Request) -> web.Response:
    body = await customers.delete_customer(
        context(request), organization(request), request.match_info["external_id"]
    )
    return ok({"customer": body})
