"""Customer pages: the list with search and pages, add and edit (the API's own save), the
customer view's Overview tab, and deletion."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from console import customer_form
from console.dates import timezone_choices
from console.messages import field_errors, say
from console.pages import (
    CUSTOMER,
    PREFIX,
    api,
    form,
    not_found,
    parse_id,
    redirect,
    show,
    signed_in,
)
from console.sessions import Viewer
from meterflow.db import Conn
from read_model.customers import customer_body
from store import customers, subscriptions
from web.errors import ValidationFailed

ROUTES = web.RouteTableDef()

PAGE_SIZES = (20, 50, 100)
STATUSES = ["active", "pending", "terminated", "canceled"]


def _page_params(request: web.Request) -> tuple[int, int]:
    raw_page, raw_size = request.query.get("page", "1"), request.query.get("per_page", "20")
    page = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) < 10**6 else 1
    per_page = int(raw_size) if raw_size.isdigit() and int(raw_size) in PAGE_SIZES else 20
    return page, per_page


@ROUTES.get(f"{PREFIX}/customers")
@signed_in
async def customer_list(request: web.Request, viewer: Viewer) -> web.Response:
    search = request.query.get("q", "").strip()[:200]
    page, per_page = _page_params(request)
    org = viewer.organization
    async with api(request).db.acquire() as conn:
        rows, total = await customers.list_customers(
            conn, org.id, per_page, (page - 1) * per_page, search or None
        )
        counts = await _active_subscriptions(conn, [r["id"] for r in rows])
    pages = max(1, -(-total // per_page))
    return show(
        request,
        viewer,
        "customers.html",
        section="customers",
        customers=[(customer_body(r), counts.get(r["id"], 0)) for r in rows],
        search=search,
        page=page,
        pages=pages,
        per_page=per_page,
        page_sizes=PAGE_SIZES,
        total=total,
    )


async def _active_subscriptions(conn: Conn, customer_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await conn.fetch(
        "SELECT customer_id, count(*) AS n FROM subscriptions "
        "WHERE customer_id = ANY($1::uuid[]) AND status = 'active' GROUP BY customer_id",
        customer_ids,
    )
    return {r["customer_id"]: r["n"] for r in rows}


def _form_page(
    request: web.Request,
    viewer: Viewer,
    *,
    values: dict[str, Any],
    errors: dict[str, list[str]] | None = None,
    customer: dict[str, Any] | None = None,
    locked: str | None = None,
    status: int = 200,
) -> web.Response:
    return show(
        request,
        viewer,
        "customer_form.html",
        status=status,
        section="customers",
        values=values,
        errors=errors or {},
        customer=customer,
        locked=locked,
        timezones=timezone_choices(),
        currencies=customer_form.CURRENCIES,
        providers=customer_form.PROVIDERS,
        metadata_rows=customer_form.metadata_rows(values),
    )


@ROUTES.get(f"{PREFIX}/customers/new")
@signed_in
async def new_customer(request: web.Request, viewer: Viewer) -> web.Response:
    return _form_page(request, viewer, values=customer_form.from_posted({}))


async def _save(
    request: web.Request, viewer: Viewer, customer_id: uuid.UUID | None
) -> web.StreamResponse:
    data = await form(request, viewer)
    existing, locked = None, None
    if customer_id is not None:
        existing, locked = await _customer(request, viewer, customer_id)
    try:
        body = await customers.save_customer(
            api(request),
            viewer.organization,
            customer_form.to_input(data),
            customer_id=customer_id,
            new=customer_id is None,
        )
    except ValidationFailed as exc:
        return _form_page(
            request,
            viewer,
            values=customer_form.from_posted(data),
            errors=field_errors(exc.error_details, customer_form.fields(data)),
            customer=existing,
            locked=locked,
            status=422,
        )
    raise redirect(f"{PREFIX}/customers/{body['lago_id']}")


@ROUTES.post(f"{PREFIX}/customers")
@signed_in
async def create_customer(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _save(request, viewer, None)


async def customer_of(
    request: web.Request, viewer: Viewer, customer_id: uuid.UUID
) -> dict[str, Any]:
    """The customer's API body (404 when not of the viewer's organization)."""
    async with api(request).db.acquire() as conn:
        row = await customers.customer_by_lago_id(conn, viewer.organization.id, customer_id)
    if row is None:
        raise not_found("customer")
    return customer_body(row)


async def _customer(
    request: web.Request, viewer: Viewer, customer_id: uuid.UUID
) -> tuple[dict[str, Any], str | None]:
    """The customer's API body and why its external ID is locked (None: it is not)."""
    async with api(request).db.acquire() as conn:
        row = await customers.customer_by_lago_id(conn, viewer.organization.id, customer_id)
        if row is None:
            raise not_found("customer")
        locked = await customers.external_id_lock(conn, customer_id)
    return customer_body(row), (say("external_id_locked") if locked else None)


@ROUTES.get(f"{CUSTOMER}/edit")
@signed_in
async def edit_customer(request: web.Request, viewer: Viewer) -> web.Response:
    customer, locked = await _customer(request, viewer, customer_id_of(request))
    values = customer_form.from_body(customer)
    return _form_page(request, viewer, values=values, customer=customer, locked=locked)


@ROUTES.post(CUSTOMER)
@signed_in
async def update_customer(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _save(request, viewer, customer_id_of(request))


def customer_id_of(request: web.Request) -> uuid.UUID:
    return parse_id(request.match_info["customer_id"], "customer")


async def customer_page(
    request: web.Request, viewer: Viewer, tab: str, **values: Any
) -> web.Response:
    """The customer view with one of its tabs (the tab's template and values)."""
    customer, locked = await _customer(request, viewer, customer_id_of(request))
    return show(
        request,
        viewer,
        f"customer_{tab}.html",
        section="customers",
        tab=tab,
        customer=customer,
        locked=locked,
        **values,
    )


async def subscriptions_of(
    request: web.Request, viewer: Viewer, external_customer_id: str, statuses: list[str]
) -> list[dict[str, Any]]:
    async with api(request).db.acquire() as conn:
        filters = {"external_customer_id": external_customer_id, "statuses": statuses}
        bodies, _ = await subscriptions.list_subscriptions(
            conn, viewer.organization.id, filters, 100, 0
        )
    return bodies


@ROUTES.get(CUSTOMER)
@signed_in
async def overview(request: web.Request, viewer: Viewer) -> web.Response:
    customer, _ = await _customer(request, viewer, customer_id_of(request))
    subscriptions = await subscriptions_of(request, viewer, customer["external_id"], STATUSES)
    return await customer_page(request, viewer, "overview", subscriptions=subscriptions)


@ROUTES.get(f"{CUSTOMER}/delete")
@signed_in
async def confirm_delete(request: web.Request, viewer: Viewer) -> web.Response:
    return await customer_page(request, viewer, "delete")


@ROUTES.post(f"{CUSTOMER}/delete")
@signed_in
async def delete_customer(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await form(request, viewer)
    customer, _ = await _customer(request, viewer, customer_id_of(request))
    await customers.delete_customer(api(request), viewer.organization, customer["external_id"])
    raise redirect(f"{PREFIX}/customers")
