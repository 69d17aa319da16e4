"""`/api/v1/fees`: requests to `store.fees`, Lago JSON back."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from resources import crud
from store import fees
from web.errors import ValidationFailed
from web.payload import INVALID, parse_instant

ROUTES = web.RouteTableDef()


def _filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    errors: dict[str, list[str]] = {}
    if q.get("fee_type") and q["fee_type"] not in fees.FEE_TYPES:
        errors["fee_type"] = [INVALID]
    filters: dict[str, Any] = {name: q.get(name) or None for name in _EQUALS}
    for name in ("created_at_from", "created_at_to"):
        filters[name] = parse_instant(q[name]) if q.get(name) else None
        if q.get(name) and filters[name] is None:
            errors[name] = ["invalid_date"]
    if errors:
        raise ValidationFailed(errors)
    return filters


_EQUALS = (
    "external_customer_id",
    "external_subscription_id",
    "currency",
    "fee_type",
    "billable_metric_code",
    "payment_status",
)


@ROUTES.get("/api/v1/fees")
async def find_all(request: web.Request) -> web.Response:
    """Filters: external_customer_id, external_subscription_id, currency, fee_type,
    billable_metric_code, payment_status, created_at_from, created_at_to."""
    return await crud.answer_page(request, "fees", fees.list_fees, _filters(request))


@ROUTES.get("/api/v1/fees/{lago_id}")
async def find(request: web.Request) -> web.Response:
    return await crud.by_lago_id(request, "fee", fees.fee_of, write=False)
