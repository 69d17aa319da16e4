"""`/api/v1/payments` and `/api/v1/customers/{id}/payments`: requests to `store.payments`,
Lago JSON back."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store import payments
from web.errors import ValidationFailed
from web.payload import INVALID, Fields, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/payments")
async def create(request: web.Request) -> web.Response:
    fields = Fields(await read_wrapped(request, "payment"), payments.CREATE_FIELDS)
    invoice_id = fields.text("invoice_id", required=True)
    cents = fields.integer("amount_cents", required=True, minimum=1)
    reference = fields.text("reference", required=True)
    raw_paid_at = fields.text("paid_at")
    paid_at = datetime.now(UTC).date()
    if raw_paid_at is not None:
        try:
            paid_at = date.fromisoformat(raw_paid_at)
        except ValueError:
            fields.add("paid_at", "invalid_date")
    fields.check()
    assert invoice_id is not None and cents is not None and reference is not None

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, object]:
        return await payments.record(conn, org, invoice_id, cents, reference, paid_at)

    return await crud.answer(request, "payment", step)


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
