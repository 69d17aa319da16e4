"""`GET /api/v1/customers/{external_customer_id}/current_usage`: the live usage of one
subscription, answered by the aggregator worker that owns the subscription's partition."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from resources import customers, subscriptions
from web.context import IngestContext, Organization, context, organization
from web.errors import AggregatorUnavailable, ApiError, NotFound, ValidationFailed

log = logging.getLogger(__name__)


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
    body = await current_usage(ctx, org, external_subscription_id)
    return web.Response(body=body, content_type="application/json")


async def current_usage(
    ctx: IngestContext, org: Organization, external_subscription_id: str
) -> bytes:
    """The subscription's current usage as the aggregator answers it (Lago's JSON body);
    AggregatorUnavailable when no worker answers for it yet."""
    url = f"{ctx.ingest.aggregator_url}/current-usage/{external_subscription_id}"
    try:
        async with ctx.http.get(url, params={"organization_id": str(org.id)}) as response:
            body = await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("usage.aggregator_unreachable url=%s error=%r", url, exc)
        raise AggregatorUnavailable() from exc
    if status == 404:
        # The subscription is in Postgres but its catalog record has not reached the
        # aggregator yet: a moment later it will answer.
        raise AggregatorUnavailable()
    if status != 200:
        # The aggregator answered, so it is not unavailable: its failure is a bug, logged
        # there with the subscription and the charge (aggregator.usage_failed).
        log.error(
            "usage.aggregator_failed subscription=%s status=%s body=%r",
            external_subscription_id,
            status,
            body[:500],
        )
        raise ApiError(code="usage_failed")
    return body


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/customers/{external_customer_id}/current_usage", find)]
