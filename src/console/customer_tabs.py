"""The customer view's Invoices, Coupons and Wallets tabs, and an invoice's page: the API's
own reads and bodies, shown in the customer's timezone."""

from __future__ import annotations

from aiohttp import web

from console.customers import customer_id_of, customer_of, customer_page
from console.pages import CUSTOMER, PREFIX, api, form, redirect, show, signed_in
from console.sessions import Viewer
from meterflow import db
from read_model.invoices import invoice_of, list_invoices
from store import applied_coupons, credit_notes, invoice_actions, wallets
from store.database import Pager

ROUTES = web.RouteTableDef()

TAB_ROWS = 100


@ROUTES.get(f"{CUSTOMER}/invoices")
@signed_in
async def invoices_tab(request: web.Request, viewer: Viewer) -> web.Response:
    customer = await customer_of(request, viewer, customer_id_of(request))
    filters = (customer["external_id"], None, None, None, None, None, None)
    async with api(request).db.acquire() as conn:
        bodies, total = await list_invoices(conn, viewer.organization.id, filters, TAB_ROWS, 0)
    return await customer_page(request, viewer, "invoices", invoices=bodies, total=total)


async def _listed_tab(
    request: web.Request, viewer: Viewer, tab: str, key: str, pager: Pager
) -> web.Response:
    """A tab listing the customer's objects (applied coupons, wallets), at most TAB_ROWS."""
    customer = await customer_of(request, viewer, customer_id_of(request))
    whose = {"external_customer_id": customer["external_id"]}
    async with api(request).db.acquire() as conn:
        bodies, _ = await pager(conn, viewer.organization.id, whose, TAB_ROWS, 0)
    return await customer_page(request, viewer, tab, **{key: bodies})


@ROUTES.get(f"{CUSTOMER}/coupons")
@signed_in
async def coupons_tab(request: web.Request, viewer: Viewer) -> web.Response:
    pager = applied_coupons.list_applied_coupons
    return await _listed_tab(request, viewer, "coupons", "applied_coupons", pager)


@ROUTES.get(f"{CUSTOMER}/wallets")
@signed_in
async def wallets_tab(request: web.Request, viewer: Viewer) -> web.Response:
    return await _listed_tab(request, viewer, "wallets", "wallets", wallets.list_wallets)


@ROUTES.get(f"{CUSTOMER}/credit_notes")
@signed_in
async def credit_notes_tab(request: web.Request, viewer: Viewer) -> web.Response:
    customer = await customer_of(request, viewer, customer_id_of(request))
    async with api(request).db.acquire() as conn:
        bodies, total = await credit_notes.list_credit_notes(
            conn, viewer.organization.id, _of_customer(customer["external_id"]), TAB_ROWS, 0
        )
    return await customer_page(request, viewer, "credit_notes", credit_notes=bodies, total=total)


def _of_customer(external_id: str) -> tuple[str | None, ...]:
    """The credit notes' list filters naming only the customer."""
    return (external_id, None, None, None, None, None, None, None)


@ROUTES.get(f"{PREFIX}/invoices/{{invoice_id}}")
@signed_in
async def invoice_page(request: web.Request, viewer: Viewer) -> web.Response:
    async with api(request).db.acquire() as conn:
        invoice = await invoice_of(conn, viewer.organization.id, request.match_info["invoice_id"])
        notes, _ = await credit_notes.list_credit_notes(
            conn, viewer.organization.id, _of_customer(invoice["customer"]["external_id"]), 100, 0
        )
    return show(
        request,
        viewer,
        "invoice.html",
        section="customers",
        invoice=invoice,
        customer=invoice["customer"],
        credit_notes=[n for n in notes if n["lago_invoice_id"] == invoice["lago_id"]],
    )


@ROUTES.post(f"{PREFIX}/invoices/{{invoice_id}}/pdf")
@signed_in
async def invoice_pdf(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """The invoice's PDF (rendered on the first request, as the API's download does)."""
    await form(request, viewer)
    async with db.unit_of_work(api(request).db) as conn:
        body = await invoice_actions.invoice_file(
            conn,
            viewer.organization.id,
            request.match_info["invoice_id"],
            f"{request.scheme}://{request.host}",
        )
    if not body.get("file_url"):
        raise redirect(f"{PREFIX}/invoices/{body['lago_id']}")
    raise redirect(body["file_url"])
