"""`/api/v1/credit_notes`: requests to `store.credit_notes`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow import db
from meterflow.db import Conn
from resources import crud
from store import credit_notes
from store.credit_note_amounts import amounts_of, creditable_invoice, parse_items
from web.context import context, organization
from web.errors import ValidationFailed
from web.payload import INVALID, Fields, ok, query_date, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/credit_notes")
async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "credit_note"), credit_notes.CREATE_FIELDS)
    invoice_id = fields.text("invoice_id", required=True)
    reason = fields.text("reason", choices=credit_notes.REASONS) or "other"
    description = fields.text("description", max_length=10_000)
    credit = fields.integer("credit_amount_cents", minimum=0) or 0
    refund = fields.integer("refund_amount_cents", minimum=0) or 0
    offset = fields.integer("offset_amount_cents", minimum=0) or 0
    items = parse_items(fields, fields.array("items", required=True) or [])
    metadata = credit_notes.parse_metadata(fields)
    fields.check()
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await creditable_invoice(conn, org.id, invoice_id)
        amounts, chosen = await amounts_of(conn, invoice, items)
        split = credit_notes.Split(credit, refund, offset)
        body = await credit_notes.issue(
            conn, org.id, invoice, chosen, amounts, reason, description, split, metadata
        )
    return ok({"credit_note": body})


@ROUTES.get("/api/v1/credit_notes/{lago_id}")
async def find(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await credit_notes.note_body(conn, await credit_notes.note_row(conn, org, lago_id))

    return await crud.by_lago_id(request, "credit_note", step, write=False)


@ROUTES.put("/api/v1/credit_notes/{lago_id}")
async def update(request: web.Request) -> web.Response:
    fields = Fields(await read_wrapped(request, "credit_note"), {"refund_status", "metadata"})
    status = fields.text("refund_status", required=True, choices=credit_notes.REFUND_STATUSES)
    metadata = credit_notes.parse_metadata(fields)
    fields.check()

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await credit_notes.set_refund_status(conn, org, lago_id, status, metadata)

    return await crud.by_lago_id(request, "credit_note", step)


@ROUTES.put("/api/v1/credit_notes/{lago_id}/void")
async def void(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "credit_note", credit_notes.void_note)


def _filters(request: web.Request) -> tuple[Any, ...]:
    q = request.query
    errors: dict[str, list[str]] = {}
    dates = [query_date(request, n, errors) for n in ("issuing_date_from", "issuing_date_to")]
    for name, allowed in (
        ("reason", credit_notes.REASONS),
        ("credit_status", credit_notes.CREDIT_STATUSES),
        ("refund_status", credit_notes.REFUND_STATUSES),
    ):
        if q.get(name) and q[name] not in allowed:
            errors[name] = [INVALID]
    if errors:
        raise ValidationFailed(errors)
    return (
        crud.listed_customer(request),
        q.get("invoice_number") or None,
        dates[0],
        dates[1],
        q.get("reason") or None,
        q.get("credit_status") or None,
        q.get("refund_status") or None,
        q.get("currency") or None,
    )


@ROUTES.get("/api/v1/credit_notes")
@ROUTES.get("/api/v1/customers/{external_customer_id}/credit_notes")
async def find_all(request: web.Request) -> web.Response:
    pager = credit_notes.list_credit_notes
    return await crud.answer_page(request, "credit_notes", pager, _filters(request))
