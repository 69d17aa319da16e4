"""`GET /api/v1/customers/{id}/current_usage`: the aggregator's answer via `store.current_usage`."""

from __future__ import annotations

from aiohttp import web

from store import current_usage, customers, subscriptions
from web.context import context, organization
from web.errors import NotFound, ValidationFailed

ROUTES = web.RouteTableDef()


@ROUTES.get("/api/v1/customers/{external_customer_id}/current_usage")
async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    external_customer_id = request.match_info["external_customer_id"]
    external_subscription_id = request.query.get("external_subscription_id")
    if not external_subscription_id:
        raise ValidationFailed({"external_subscription_id": ["value_is_mandatory"]})
    async with ctx.db.acquire() as conn:
        customer = await customers.customer_by_external_id(conn, org.id, external_customer_id)
        if customer is None:
            raise NotFound("customer")
        subscription = await subscriptions.subscription_by_external_id(
            conn, org.id, external_subscription_id
        )
    if subscription is None or subscription["external_customer_id"] != external_customer_id:
        raise NotFound("subscription")
    body = await current_usage.current_usage(ctx, org, external_subscription_id)
    return web.Response(body=body, content_type="application/json")
