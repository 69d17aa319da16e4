"""`POST /api/v1/invoices` (one-off): requests to `store.one_off_invoices`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from store import one_off_invoices
from web.context import context, organization
from web.payload import ok, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/invoices")
async def create(request: web.Request) -> web.Response:
    raw = await read_wrapped(request, "invoice")
    body = await one_off_invoices.create_one_off_invoice(
        context(request), organization(request), raw
    )
    return ok({"invoice": body})
