"""`GET /api/v1/customers/{id}/current_usage`: the aggregator's answer via `store.current_usage`;
`.../projected_usage`: that answer carried to the period's end (`store.projected_usage`);
`.../past_usage`: the closed periods' usage from `read_model.past_usage`;
`/api/v1/subscriptions/{id}/lifetime_usage`: all of them and what came before
(`store.lifetime_usage`)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from read_model import past_usage
from resources import crud
from store import current_usage, customers, lifetime_usage, projected_usage, subscriptions
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, Fields, ok, read_wrapped

ROUTES = web.RouteTableDef()


async def _current(request: web.Request) -> bytes:
    """The current usage, as the aggregator answers it, of the subscription the query names
    (the path's customer's: 404 otherwise)."""
    ctx, org = context(request), organization(request)
    external_customer_id = request.match_info["external_customer_id"]
    external_subscription_id = request.query.get("external_subscription_id")
    if not external_subscription_id:
        raise ValidationFailed({"external_subscription_id": ["value_is_mandatory"]})
    async with ctx.db.acquire() as conn:
        missing = await subscriptions.missing_for_usage(
            conn, org.id, external_customer_id, external_subscription_id
        )
    if missing is not None:
        raise NotFound(missing)
    return await current_usage.current_usage(ctx, org, external_subscription_id)


@ROUTES.get("/api/v1/customers/{external_customer_id}/current_usage")
async def find(request: web.Request) -> web.Response:
    body = await _current(request)
    return web.Response(body=body, content_type="application/json")


@ROUTES.get("/api/v1/customers/{external_customer_id}/projected_usage")
async def find_projected(request: web.Request) -> web.Response:
    body = await _current(request)
    usage = orjson.loads(body)["customer_usage"]
    charge_ids = [line["charge"]["lago_id"] for line in usage["charges_usage"]]
    async with context(request).db.acquire() as conn:
        properties = await projected_usage.charge_properties(
            conn, organization(request).id, charge_ids
        )
    projected = projected_usage.project(usage, properties, datetime.now(UTC))
    return ok({"customer_projected_usage": projected})


@ROUTES.get("/api/v1/customers/{external_customer_id}/past_usage")
async def find_past(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    external_customer_id = request.match_info["external_customer_id"]
    q = request.query
    external_subscription_id = q.get("external_subscription_id")
    if not external_subscription_id:
        raise ValidationFailed({"external_subscription_id": ["value_is_mandatory"]})
    raw_count = q.get("periods_count") or None
    if raw_count is not None and (not raw_count.isdigit() or int(raw_count) < 1):
        raise ValidationFailed({"periods_count": [INVALID]})
    async with ctx.db.acquire() as conn:
        if await customers.customer_by_external_id(conn, org.id, external_customer_id) is None:
            raise NotFound("customer")
        ids = await past_usage.subscriptions_of(
            conn, org.id, external_customer_id, external_subscription_id
        )
    if not ids:
        raise NotFound("subscription")
    query = past_usage.PastUsageQuery(
        ids, q.get("billable_metric_code") or None, None if raw_count is None else int(raw_count)
    )
    return await crud.answer_page(request, "usage_periods", past_usage.past_usage, query)


LIFETIME = "/api/v1/subscriptions/{external_id}/lifetime_usage"


async def _lifetime(request: web.Request, historical_cents: int | None) -> web.Response:
    """The subscription's lifetime usage, after stating its historical amount when given."""
    ctx, org = context(request), organization(request)
    external_id = request.match_info["external_id"]
    async with ctx.db.acquire() as conn:
        subscription = await subscriptions.subscription_by_external_id(conn, org.id, external_id)
        if subscription is None:
            raise NotFound("subscription")
        if historical_cents is not None:
            await lifetime_usage.state_historical(conn, org.id, external_id, historical_cents)
    usage = orjson.loads(await current_usage.current_usage(ctx, org, external_id))
    async with ctx.db.acquire() as conn:
        before = await lifetime_usage.before_now(conn, org.id, external_id)
    body = lifetime_usage.lifetime_body(subscription, before, usage["customer_usage"])
    return ok({"lifetime_usage": body})


@ROUTES.get(LIFETIME)
async def find_lifetime(request: web.Request) -> web.Response:
    return await _lifetime(request, None)


@ROUTES.put(LIFETIME)
async def update_lifetime(request: web.Request) -> web.Response:
    fields = Fields(
        await read_wrapped(request, "lifetime_usage"), {"external_historical_usage_amount_cents"}
    )
    cents = fields.integer("external_historical_usage_amount_cents", required=True, minimum=0)
    fields.check()
    assert cents is not None
    return await _lifetime(request, cents)
