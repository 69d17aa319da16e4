"""The API's side of current usage: the aggregator's answer (`meterflow.aggregator_usage`)
turned into Lago's body or Lago's error."""

from __future__ import annotations

import logging

from meterflow.aggregator_usage import Unreachable
from web.context import IngestContext, Organization
from web.errors import AggregatorUnavailable, ApiError

log = logging.getLogger(__name__)


async def current_usage(
    ctx: IngestContext, org: Organization, external_subscription_id: str
) -> bytes:
    """The subscription's current usage as the aggregator answers it (Lago's JSON body);
    AggregatorUnavailable when no worker answers for it yet."""
    try:
        answer = await ctx.usage.get(ctx.http, external_subscription_id, str(org.id))
    except Unreachable as exc:
        raise AggregatorUnavailable() from exc
    if answer.status in (404, 503):
        # 404: the subscription is in Postgres but its catalog record has not reached the
        # aggregator yet; 503: no worker can answer for its partition now (not ready, or
        # its owner is down until the others take its partitions over). A moment later it
        # will answer.
        raise AggregatorUnavailable()
    if answer.status != 200:
        # The aggregator answered, so it is not unavailable: its failure is a bug, logged
        # there with the subscription and the charge (aggregator.usage_failed).
        log.error(
            "usage.aggregator_failed subscription=%s status=%s url=%s body=%r",
            external_subscription_id,
            answer.status,
            answer.url,
            answer.body[:500],
        )
        raise ApiError(code="usage_failed")
    return answer.body
