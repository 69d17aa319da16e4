"""`/api/v1/fees`: requests to `store.fees`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from store import fees
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, ok, page_params, pagination_meta, parse_instant


def _filters(request: web.Request) -> tuple[Any, ...]:
    q = request.query
    errors: dict[str, list[str]] = {}
    if q.get("fee_type") and q["fee_type"] not in fees.FEE_TYPES:
        errors["fee_type"] = [INVALID]
    bounds = []
    for name in ("created_at_from", "created_at_to"):
        instant = parse_instant(q[name]) if q.get(name) else None
        if q.get(name) and instant is None:
            errors[name] = ["invalid_date"]
        bounds.append(instant)
    if errors:
        raise ValidationFailed(errors)
    return (
        q.get("external_customer_id") or None,
        q.get("external_subscription_id") or None,
        q.get("currency") or None,
        q.get("fee_type") or None,
        q.get("billable_metric_code") or None,
        q.get("payment_status") or None,
        *bounds,
    )


async def find_all(request: web.Request) -> web.Response:
    """Filters: external_customer_id, external_subscription_id, currency, fee_type,
    billable_metric_code, payment_status, created_at_from, created_at_to."""
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    where = (
        "WHERE i.organization_id = $1 AND ($2::text IS NULL OR c.external_id = $2) "
        "AND ($3::text IS NULL OR s.external_id = $3) AND ($4::text IS NULL OR f.currency = $4) "
        "AND ($5::text IS NULL OR f.fee_type = $5) "
        "AND ($6::text IS NULL OR (f.fee_type = 'charge' AND f.item_code = $6)) "
        "AND ($7::text IS NULL OR i.payment_status = $7) "
        "AND ($8::timestamptz IS NULL OR f.created_at >= $8) "
        "AND ($9::timestamptz IS NULL OR f.created_at <= $9) "
    )
    args = (org.id, *_filters(request))
    async with ctx.db.acquire() as conn:
        total = await conn.fetchval("SELECT count(*) " + fees.FEES_FROM + where, *args)
        rows = await conn.fetch(
            "SELECT f.*, c.external_id AS external_customer_id, "
            "s.external_id AS external_subscription_id "
            + fees.FEES_FROM
            + where
            + "ORDER BY f.created_at DESC, f.invoice_id, f.position LIMIT $10 OFFSET $11",
            *args,
            per_page,
            (page - 1) * per_page,
        )
        bodies = await fees.fee_bodies(conn, list(rows))
    return ok({"fees": bodies, "meta": pagination_meta(page, per_page, int(total))})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    try:
        fee_id = uuid.UUID(request.match_info["lago_id"])
    except ValueError:
        raise NotFound("fee") from None
    async with ctx.db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT f.*, c.external_id AS external_customer_id, "
            "s.external_id AS external_subscription_id "
            + fees.FEES_FROM
            + "WHERE f.id = $1 AND i.organization_id = $2",
            fee_id,
            org.id,
        )
        if row is None:
            raise NotFound("fee")
        (body,) = await fees.fee_bodies(conn, [row])
    return ok({"fee": body})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/fees", find_all), web.get("/api/v1/fees/{lago_id}", find)]
