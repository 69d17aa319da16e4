"""The aggregator's current-usage client: the live usage of one subscription, answered over
HTTP by the aggregator worker that owns the subscription's partition."""

from __future__ import annotations

import logging

import aiohttp

from web.context import IngestContext, Organization
from web.errors import AggregatorUnavailable, ApiError

log = logging.getLogger(__name__)


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
