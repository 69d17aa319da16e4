"""The aggregator worker's HTTP pages: current usage (routed to the worker that owns the
subscription's partition; 503 while that worker cannot be reached or has not read its
catalog, or this one cannot route yet) and readiness."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import faust
from faust.web import Request, Response, View

from aggregator import kafka_transport
from aggregator.current_usage import UsageFailed

if TYPE_CHECKING:
    from aggregator.app import Aggregator

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two lines about an owner that cannot be reached
# How long a worker waits for the partition's owner it forwards a current-usage request to:
# under ingest's METERFLOW_INGEST_USAGE_TIMEOUT (5 s), so that the worker answers 503
# before its client gives up; aiohttp's default is 5 minutes, which an owner that never
# answers (its machine gone: no refusal, or its process stopped) would hold each forwarding
# connection for, until the forwards to every owner queued behind them.
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=3.0, connect=1.0)


def forwarding_client() -> aiohttp.ClientSession:
    """The HTTP client Faust forwards requests to other workers with (its `HttpClient`)."""
    return aiohttp.ClientSession(timeout=FORWARD_TIMEOUT)


def add_pages(app: faust.App, aggregator: Aggregator) -> None:
    async def usage_view(view: View, request: Request, external_subscription_id: str) -> Response:
        organization_id = request.query.get("organization_id")
        if not organization_id:
            return view.json(_error(422, "organization_id is required"), status=422)
        try:
            body = aggregator.usage(organization_id, external_subscription_id)
        except Exception as exc:
            charge = exc.charge_id if isinstance(exc, UsageFailed) else None
            log.error(
                "aggregator.usage_failed organization=%s subscription=%s charge=%s",
                organization_id,
                external_subscription_id,
                charge,
                exc_info=True,
            )
            aggregator.metrics.usage_failures.inc()
            return view.json(_error(500, "usage_failed"), status=500)
        if body is None:
            if not aggregator.catalog_reader.ready.is_set():
                # Its catalog (re)read for its partitions is not done: a subscription it
                # does not hold yet is not a subscription not found.
                return view.json(_error(503, "not_ready"), status=503)
            return view.json(_error(404, "subscription_not_found"), status=404)
        return view.json(body)

    # (Faust types the routed view as taking the request alone; it passes the match on.)
    routed = cast(
        Callable[..., Awaitable[Response]],
        app.topic_route(aggregator.events_topic, match_info="external_subscription_id")(usage_view),
    )

    last_logged = -LOG_EVERY  # the last owner_unreachable line (monotonic seconds)

    async def owned_or_forwarded(
        view: View, request: Request, external_subscription_id: str
    ) -> Response:
        nonlocal last_logged
        if not aggregator.routing_ready.is_set():
            # Just started: Faust's router cannot place the subscription yet (it failed
            # inside Faust, a 500). Another worker, or this one a moment later, answers.
            return view.json(_error(503, "not_ready"), status=503)
        try:
            return await routed(view, request, external_subscription_id=external_subscription_id)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The partition's owner (by the last rebalance) cannot be reached: down, until
            # the group hands its partitions to the workers left. Unavailable, not a failure;
            # counted each time, logged once in LOG_EVERY seconds (every request for the
            # owner's subscriptions fails alike until then).
            aggregator.metrics.usage_unavailable.inc()
            if time.monotonic() - last_logged >= LOG_EVERY:
                last_logged = time.monotonic()
                log.warning(
                    "aggregator.owner_unreachable subscription=%s error=%r (logged once in "
                    "%.0f s; meterflow_aggregator_usage_unavailable_total counts them all)",
                    external_subscription_id,
                    exc,
                    LOG_EVERY,
                )
            return view.json(_error(503, "owner_unavailable"), status=503)

    app.page("/current-usage/{external_subscription_id}")(owned_or_forwarded)

    async def ready_view(view: View, request: Request) -> Response:
        ready = aggregator.ready()
        body = {
            "ready": ready,
            "partitions": sorted(aggregator.owned_partitions()),
            "fetch_max_wait_ms": kafka_transport.fetch_max_wait_ms(app),
        }
        return view.json(body, status=200 if ready else 503)

    app.page("/ready")(ready_view)


_REASONS = {
    404: "Not Found",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _error(status: int, code: str) -> dict[str, Any]:
    return {
        "status": status,
        "error": _REASONS[status],
        "code": code,
        "error_details": {},
    }
