"""`/api/v1/invoices/{lago_id}/...` action: requests to `store.invoice_actions`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from read_model.invoices import PAYMENT_STATUSES
from resources import crud
from resources.document_files import base_url
from store import invoice_actions
from web.payload import Fields, read_json, read_wrapped

ROUTES = web.RouteTableDef()
INVOICE = "/api/v1/invoices/{lago_id}"


@ROUTES.post(f"{INVOICE}/void")
async def void(request: web.Request) -> web.Response:
    """See `store.invoice_actions.void_invoice`; a body is optional."""
    raw = await read_json(request) if request.can_read_body else {}
    fields = Fields(raw if isinstance(raw, dict) else {}, invoice_actions.VOID_FIELDS)
    generate = bool(fields.flag("generate_credit_note"))
    refund = fields.integer("refund_amount", minimum=0) or 0
    credit = fields.integer("credit_amount", minimum=0)
    fields.check()

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await invoice_actions.void_invoice(
            conn, org, lago_id, generate=generate, refund=refund, credit=credit
        )

    return await crud.by_lago_id(request, "invoice", step)


@ROUTES.put(INVOICE)
async def update(request: web.Request) -> web.Response:
    fields = Fields(await read_wrapped(request, "invoice"), invoice_actions.UPDATE_FIELDS)
    payment_status = fields.text("payment_status", choices=PAYMENT_STATUSES)
    raw_metadata = fields.array("metadata")
    fields.check()

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await invoice_actions.update_invoice(
            conn, org, lago_id, fields, payment_status, raw_metadata
        )

    return await crud.by_lago_id(request, "invoice", step)


# The spec says POST, Lago's Python client sends PUT: both are served.
@ROUTES.post(f"{INVOICE}/lose_dispute")
@ROUTES.put(f"{INVOICE}/lose_dispute")
async def lose_dispute(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "invoice", invoice_actions.lose_dispute)


@ROUTES.put(f"{INVOICE}/refresh")
async def refresh(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "invoice", invoice_actions.current_invoice, write=False)


@ROUTES.post(f"{INVOICE}/retry")
async def retry(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "invoice", invoice_actions.retry_invoice, write=False)


@ROUTES.post(f"{INVOICE}/download")
async def download(request: web.Request) -> web.Response:
    """Render the PDF on the first download (announced by `invoice.generated`) and answer the
    invoice with its `file_url`; a draft has no PDF yet (Lago answers it without one)."""
    url = base_url(request)

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await invoice_actions.invoice_file(conn, org, lago_id, url)

    return await crud.by_lago_id(request, "invoice", step)
