"""`/api/v1/payments` and `/api/v1/customers/{id}/payments`: requests to `store.payments`,
Lago JSON back."""

from __future__ import annotations

import uuid

from aiohttp import web

from resources import crud
from store import payments
from web.errors import ValidationFailed
from web.payload import INVALID

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/payments")
async def create(request: web.Request) -> web.Response:
    return await crud.created(request, "payment", payments.create_payment)


@ROUTES.get("/api/v1/payments/{lago_id}")
async def find(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "payment", payments.find, write=False)


@ROUTES.get("/api/v1/payments")
@ROUTES.get("/api/v1/customers/{external_customer_id}/payments")
async def find_all(request: web.Request) -> web.Response:
    raw_invoice = request.query.get("invoice_id") or None
    invoice_id = None
    if raw_invoice is not None:
        try:
            invoice_id = uuid.UUID(raw_invoice)
        except ValueError:
            raise ValidationFailed({"invoice_id": [INVALID]}) from None
    filters = (crud.listed_customer(request), invoice_id)
    return await crud.answer_page(request, "payments", payments.list_payments, filters)
