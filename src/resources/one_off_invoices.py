"""`POST /api/v1/invoices` (one-off): requests to `store.one_off_invoices`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store import one_off_invoices

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/invoices")
async def create(request: web.Request) -> web.Response:
    return await crud.created(request, "invoice", one_off_invoices.create_one_off_invoice)
