"""`POST /api/v1/invoices/preview`: what the next invoice of a customer's subscriptions would
be now, from their current usage (asked of the aggregator, as `current_usage` does), priced
by the invoicer's own code (`invoicer.pricing`) with the customer's coupons, taxes, credit
notes and wallets as they stand.

The preview is the real invoice write (`invoicer.repository.insert_invoice`) inside a
transaction that is always rolled back: the answer is exactly what the invoicer would write,
and nothing of it remains (no number, coupon, credit or webhook is used up).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from invoicer import repository as invoicer_repository
from invoicer import terms as invoicer_terms
from invoicer.closed_period import ChargeUsage, PeriodClosed
from invoicer.pricing import price_period
from resources import subscriptions
from resources.current_usage import current_usage
from resources.invoices import extended_body
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, ok, read_json

_INPUT = {
    "customer",
    "subscriptions",
    "plan_code",
    "billing_time",
    "subscription_at",
    "coupons",
    "billing_entity_code",
}


class _RolledBack(Exception):
    """Raised to undo the preview's transaction once the body is rendered."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("preview")
        self.body = body


def _closed(usage: dict[str, Any], subscription: Any, org: uuid.UUID) -> PeriodClosed:
    """The subscription's current period as if it closed now, from its current usage."""
    current = usage["customer_usage"]
    start = datetime.fromisoformat(current["from_datetime"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(current["to_datetime"].replace("Z", "+00:00"))
    charges = tuple(
        ChargeUsage(
            charge_id=c["charge"]["lago_id"],
            charge_model=c["charge"]["charge_model"],
            billable_metric_id=c["billable_metric"]["lago_id"],
            billable_metric_code=c["billable_metric"]["code"],
            aggregation_type=c["billable_metric"]["aggregation_type"],
            units=Decimal(c["units"]),
            events_count=c["events_count"],
            aggregation={},
        )
        for c in current["charges_usage"]
    )
    return PeriodClosed(
        period_key=f"preview:{uuid.uuid4()}",
        organization_id=str(org),
        subscription_id=str(subscription["id"]),
        external_subscription_id=subscription["external_id"],
        external_customer_id=subscription["external_customer_id"],
        plan_code=subscription["plan_code"],
        currency=current["currency"],
        period_start=start,
        period_end=end,
        terminated=False,
        charges=charges,
        adjustments=(),
        closed_at=None,
    )


async def preview(request: web.Request) -> web.Response:
    """Input: `customer.external_id` and `subscriptions.external_ids` (one subscription: its
    next invoice from current usage). Previewing a plan for a subscription that does not
    exist yet (`plan_code`) is not supported (422)."""
    ctx, org = context(request), organization(request)
    raw = await read_json(request)
    fields = Fields(raw if isinstance(raw, dict) else {}, _INPUT)
    customer_in = fields.mapping("customer", required=True) or {}
    subscriptions_in = fields.mapping("subscriptions") or {}
    if fields.text("plan_code") is not None:
        fields.add("plan_code", "not_supported")
    external_ids = subscriptions_in.get("external_ids")
    if not (isinstance(external_ids, list) and len(external_ids) == 1):
        fields.add("subscriptions.external_ids", "one_subscription_required")
    external_customer_id = customer_in.get("external_id")
    if not isinstance(external_customer_id, str) or not external_customer_id:
        fields.add("customer.external_id", "value_is_mandatory")
    fields.check()
    assert isinstance(external_ids, list) and isinstance(external_customer_id, str)
    async with ctx.db.acquire() as conn:
        subscription = await subscriptions.subscription_by_external_id(
            conn, org.id, str(external_ids[0])
        )
    if subscription is None or subscription["external_customer_id"] != external_customer_id:
        raise NotFound("subscription")
    if subscription["status"] != "active":
        raise ValidationFailed({"subscriptions.external_ids": ["subscription_not_active"]})
    usage = orjson.loads(await current_usage(ctx, org, subscription["external_id"]))
    closed = _closed(usage, subscription, org.id)
    try:
        async with ctx.db.acquire() as conn, conn.transaction():
            loaded = await invoicer_terms.load(conn, closed)
            priced = price_period(closed, loaded.terms, {}, now=datetime.now(UTC))
            invoice_id = await invoicer_repository.insert_invoice(conn, closed, loaded, priced)
            invoice = await conn.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
            assert invoice is not None
            raise _RolledBack(await extended_body(conn, invoice))
    except _RolledBack as done:
        return ok({"invoice": done.body})


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/invoices/preview", preview)]
