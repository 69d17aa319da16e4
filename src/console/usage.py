"""The Usage tab: each active subscription's current period, total, charges and usage alerts
(how far each is, when one was last crossed), from the
aggregator's live totals (the API's current-usage call), kept up to date by server-sent
events: the server asks the aggregator every METERFLOW_CONSOLE_USAGE_INTERVAL seconds and
sends the tab's new HTML only when a figure changed; the page does not poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from billing.alert_thresholds import threshold
from console import sessions
from console.customers import STATUSES, customer_id_of, customer_of, customer_page, subscriptions_of
from console.dates import Dates
from console.pages import CUSTOMER, PREFIX, SESSION_COOKIE, api, signed_in, state
from console.rendering import money, number, render_fragment
from console.sessions import Viewer
from store.alerts import alert_summaries
from store.current_usage import current_usage
from web.errors import AggregatorUnavailable, ApiError

ROUTES = web.RouteTableDef()

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 15.0
_NOT_YET = (
    "The aggregator has not answered for this subscription yet (starting, or its plan is on "
    "its way): this tab fills in by itself."
)


def _charges(usage: dict[str, Any]) -> list[dict[str, Any]]:
    total = usage["amount_cents"]
    out: list[dict[str, Any]] = []
    for item in usage["charges_usage"]:
        cents = item["amount_cents"]
        out.append(
            {
                "name": item["charge"].get("invoice_display_name")
                or item["billable_metric"]["name"],
                "code": item["billable_metric"]["code"],
                "charge_model": item["charge"]["charge_model"],
                "units": item["units"],
                "events_count": item["events_count"],
                "amount_cents": cents,
                "share": float(Decimal(cents) / Decimal(total) * 100) if total else 0.0,
            }
        )
    return out


_WATCHES = {
    "current_usage_amount": "usage amount",
    "billable_metric_current_usage_amount": "amount of",
    "billable_metric_current_usage_units": "units of",
    "lifetime_usage_amount": "lifetime usage amount",
}


def _alert(row: asyncpg.Record, currency: str) -> dict[str, Any]:
    """An alert as the tab shows it: amounts in money, units as numbers; the thresholds the
    last checked value reached are `crossed`."""

    def shown(value: Decimal) -> str:
        if row["alert_type"] == "billable_metric_current_usage_units":
            return number(value)
        return money(int(value), currency)

    last: Decimal = row["previous_value"]
    thresholds = [threshold(t) for t in row["thresholds"]]
    return {
        "code": row["code"],
        "name": row["name"],
        "watches": _WATCHES[row["alert_type"]],
        "metric_code": row["metric_code"],
        "value": shown(last) if row["last_processed_at"] else "not yet",
        "thresholds": [
            {"text": shown(t.value), "crossed": t.value <= last, "recurring": t.recurring}
            for t in thresholds
        ],
        "last_triggered_at": row["last_triggered_at"],
    }


async def usage_of(
    request: web.Request, viewer: Viewer, customer: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per active subscription: its API body and its current usage (None while the
    aggregator does not answer for it)."""
    active = await subscriptions_of(request, viewer, customer["external_id"], [STATUSES[0]])
    out: list[dict[str, Any]] = []
    for subscription in active:
        try:
            raw = await current_usage(
                api(request), viewer.organization, subscription["external_id"]
            )
        except AggregatorUnavailable:
            out.append({"subscription": subscription, "usage": None, "problem": _NOT_YET})
            continue
        except ApiError as exc:  # the aggregator answered with a failure, logged on both sides
            problem = f"The aggregator could not compute this usage ({exc.code}): retrying."
            out.append({"subscription": subscription, "usage": None, "problem": problem})
            continue
        usage = orjson.loads(raw)["customer_usage"]
        async with api(request).db.acquire() as conn:
            rows = await alert_summaries(conn, uuid.UUID(subscription["lago_id"]))
        out.append(
            {
                "subscription": subscription,
                "usage": usage,
                "charges": _charges(usage),
                "alerts": [_alert(row, usage["currency"]) for row in rows],
            }
        )
    return out


def _fragment(viewer: Viewer, customer: dict[str, Any], usages: list[dict[str, Any]]) -> str:
    return render_fragment(
        "_usage.html",
        usages=usages,
        customer=customer,
        prefix=PREFIX,
        dates=Dates(viewer.organization.timezone),
    )


@ROUTES.get(f"{CUSTOMER}/usage")
@signed_in
async def usage_tab(request: web.Request, viewer: Viewer) -> web.Response:
    customer = await customer_of(request, viewer, customer_id_of(request))
    fragment = _fragment(viewer, customer, await usage_of(request, viewer, customer))
    return await customer_page(request, viewer, "usage", fragment=fragment)


async def _still_signed_in(request: web.Request, token: str) -> bool:
    """A stream ends when its session is revoked or expires."""
    async with api(request).db.acquire() as conn:
        return await sessions.viewer(conn, token) is not None


def _event(html: str) -> bytes:
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: usage\n{data}\n".encode()


@ROUTES.get(f"{CUSTOMER}/usage/stream")
@signed_in
async def usage_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """`text/event-stream` of the tab's HTML: one `usage` event at once, then one each time
    it changes; a comment every KEEP_ALIVE_SECONDS keeps proxies from closing it."""
    customer = await customer_of(request, viewer, customer_id_of(request))
    console = state(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    last, last_sent = "", time.monotonic()
    log.info("console.usage_stream_opened customer_id=%s", customer["lago_id"])
    token = request.cookies[SESSION_COOKIE]
    with contextlib.suppress(ConnectionResetError):
        await response.write(b"retry: 2000\n\n")
        while not console.closing.is_set() and await _still_signed_in(request, token):
            html = _fragment(viewer, customer, await usage_of(request, viewer, customer))
            if html != last:
                await response.write(_event(html))
                last, last_sent = html, time.monotonic()
            elif time.monotonic() - last_sent > KEEP_ALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                last_sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(console.closing.wait(), console.settings.usage_interval)
    log.info("console.usage_stream_closed customer_id=%s", customer["lago_id"])
    return response
