"""`/api/v1/invoices`: list, read and finalize the invoices the invoicer issued.

The invoicer writes invoices and fees (tables of migration 0010); this module only reads
them, and finalizes a draft on request. Every query is scoped to the caller's organization.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from meterflow import db
from read_model import drafts
from read_model.invoices import (
    PAYMENT_STATUSES,
    STATUSES,
    extended_body,
    invoice_of,
    invoice_row,
    list_invoices,
)
from resources import crud
from web.context import context, organization
from web.errors import ValidationFailed
from web.payload import INVALID, ok, query_date

ROUTES = web.RouteTableDef()


def _choices(
    request: web.Request, name: str, allowed: tuple[str, ...], errors: dict[str, list[str]]
) -> list[str] | None:
    values = request.query.getall(f"{name}es[]", []) or request.query.getall(f"{name}[]", [])
    if not values and request.query.get(name):
        values = [request.query[name]]
    if any(v not in allowed for v in values):
        errors[name] = [INVALID]
    return values or None


@ROUTES.get("/api/v1/invoices")
@ROUTES.get("/api/v1/customers/{external_customer_id}/invoices")
async def find_all(request: web.Request) -> web.Response:
    """Filters: external_customer_id, status / statuses[], payment_status /
    payment_statuses[], invoice_type, currency, issuing_date_from, issuing_date_to."""
    errors: dict[str, list[str]] = {}
    date_from = query_date(request, "issuing_date_from", errors)
    date_to = query_date(request, "issuing_date_to", errors)
    statuses = _choices(request, "status", STATUSES, errors)
    payment_statuses = _choices(request, "payment_status", PAYMENT_STATUSES, errors)
    if errors:
        raise ValidationFailed(errors)
    filters = (
        crud.listed_customer(request),
        statuses,
        payment_statuses,
        date_from,
        date_to,
        request.query.get("invoice_type") or None,
        request.query.get("currency") or None,
    )
    return await crud.answer_page(request, "invoices", list_invoices, filters)


@ROUTES.get("/api/v1/invoices/{lago_id}")
async def find(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "invoice", invoice_of, write=False)


@ROUTES.put("/api/v1/invoices/{lago_id}/finalize")
async def finalize(request: web.Request) -> web.Response:
    """Finalize a draft now, before its grace period ends; any other invoice is returned
    as it is, as Lago does."""
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await invoice_row(conn, org.id, request.match_info["lago_id"], lock=True)
        if invoice["status"] == "draft":
            # The same finalization as the invoicer's sweep: prepaid credits pay it now.
            updated = await drafts.finalize_draft(conn, invoice["id"], datetime.now(UTC))
            invoice = updated or invoice
        body = await extended_body(conn, invoice)
    return ok({"invoice": body})
