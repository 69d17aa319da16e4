"""`/api/v1/applied_coupons`: requests to `store.applied_coupons`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store import applied_coupons
from web.errors import ValidationFailed
from web.payload import INVALID, object_id

ROUTES = web.RouteTableDef()
OF_CUSTOMER = "/api/v1/customers/{external_customer_id}/applied_coupons"


@ROUTES.post("/api/v1/applied_coupons")
async def apply(request: web.Request) -> web.Response:
    return await crud.created(request, "applied_coupon", applied_coupons.apply_coupon)


@ROUTES.get("/api/v1/applied_coupons")
@ROUTES.get(OF_CUSTOMER)
async def find_all(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in ("active", "terminated"):
        raise ValidationFailed({"status": [INVALID]})
    filters = {
        "external_customer_id": crud.listed_customer(request),
        "status": status,
        "coupon_codes": request.query.getall("coupon_code[]", []) or None,
    }
    return await crud.answer_page(
        request, "applied_coupons", applied_coupons.list_applied_coupons, filters
    )


@ROUTES.delete(OF_CUSTOMER + "/{applied_coupon_id}")
async def remove(request: web.Request) -> web.Response:
    """Terminate one of the customer's applied coupons: later invoices no longer use it."""
    applied_id = object_id(request.match_info["applied_coupon_id"], "applied_coupon")
    external_customer_id = request.match_info["external_customer_id"]

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        remove = applied_coupons.remove_applied_coupon
        return await remove(conn, org, external_customer_id, applied_id)

    return await crud.answer(request, "applied_coupon", step)
