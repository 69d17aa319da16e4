"""`POST /api/v1/invoices/preview`: what the next invoice of a customer's subscription would
be now, from its current usage (asked of the aggregator, as `current_usage` does); or, with
`plan_code`, the first invoice of a subscription to that plan not made yet (its first period,
no usage; the customer named by `external_id`, or a new one from the given fields). Both are
priced by the code the invoicer runs (`invoicing.pricing`) with the customer's coupons, taxes,
credit notes and wallets as they stand.

The preview is the real invoice write (`invoicing.write.insert_invoice`) inside a
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

from billing.periods import BillingTime, PlanInterval, first_period, resolve_timezone
from invoicing import terms as invoicing_terms
from invoicing import write as invoicing_write
from invoicing.closed_period import ChargeUsage, PeriodClosed
from invoicing.pricing import price_period
from read_model.customers import customer_by_id
from read_model.invoices import extended_body
from store import customers, plans, subscriptions
from store.current_usage import current_usage
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, currency, ok, read_json

ROUTES = web.RouteTableDef()

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


async def _render(conn: Any, closed: PeriodClosed) -> dict[str, Any]:
    """The invoice the invoicer would write for `closed`, written in the caller's transaction
    (which the caller rolls back) and read back as the API shows it."""
    loaded = await invoicing_terms.load(conn, closed)
    priced = price_period(closed, loaded.terms, {}, now=datetime.now(UTC))
    invoice_id = await invoicing_write.insert_invoice(conn, closed, loaded, priced)
    invoice = await conn.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
    assert invoice is not None
    return await extended_body(conn, invoice)


async def _new_subscription(
    conn: Any, org: Any, customer_in: dict[str, Any], fields: Fields
) -> PeriodClosed:
    """The first period of a subscription to `plan_code`, inserted for the preview only."""
    plan = await plans.plan_by_code(conn, org.id, fields.raw["plan_code"])
    if plan is None:
        raise NotFound("plan")
    billing_time = fields.text("billing_time", choices=tuple(BillingTime)) or "calendar"
    start = fields.instant("subscription_at") or datetime.now(UTC)
    external_customer_id = customer_in.get("external_id")
    customer = None
    if isinstance(external_customer_id, str) and external_customer_id:
        customer = await customers.customer_by_external_id(conn, org.id, external_customer_id)
    if customer is None:
        # A customer not made yet: only what the invoice needs of it is read.
        given = Fields(customer_in, set(customer_in), prefix="customer.")
        columns: dict[str, Any] = {
            "name": given.text("name"),
            "email": given.text("email"),
            "currency": currency(given, "currency"),
            "timezone": given.timezone("timezone"),
            "attributes": {},
        }
        fields.merge(given.errors)
        fields.check()
        customer_id = await customers.insert_customer(
            conn, org.id, external_customer_id or f"preview-{uuid.uuid4()}", columns
        )
        customer = await customer_by_id(conn, customer_id)
    fields.check()
    subscription_id = await subscriptions.insert_subscription(
        conn,
        org.id,
        {
            "external_id": f"preview-{uuid.uuid4()}",
            "customer_id": customer["id"],
            "plan_id": plan["id"],
            "name": None,
            "billing_time": billing_time,
            "subscription_at": start,
            "started_at": start,
            "ending_at": None,
            "status": "active",
        },
    )
    period = first_period(
        subscription_at=start,
        interval=PlanInterval(plan["interval"]),
        billing_time=BillingTime(billing_time),
        tz=resolve_timezone(customer["timezone"], customer["organization_timezone"]),
    )
    return PeriodClosed(
        period_key=f"preview:{uuid.uuid4()}",
        organization_id=str(org.id),
        subscription_id=str(subscription_id),
        external_subscription_id="preview",
        external_customer_id=customer["external_id"],
        plan_code=plan["code"],
        currency=plan["amount_currency"],
        period_start=period.start,
        period_end=period.end,
        # In advance, the first invoice bills only the first period's fee (no next period).
        terminated=plan["pay_in_advance"],
        charges=(),
        adjustments=(),
        closed_at=None,
    )


@ROUTES.post("/api/v1/invoices/preview")
async def preview(request: web.Request) -> web.Response:
    """Input: `customer.external_id` and `subscriptions.external_ids` (one subscription: its
    next invoice from current usage), or `customer` and `plan_code` (with `billing_time`,
    `subscription_at`): the first invoice of a subscription to that plan."""
    ctx, org = context(request), organization(request)
    raw = await read_json(request)
    fields = Fields(raw if isinstance(raw, dict) else {}, _INPUT)
    customer_in = fields.mapping("customer", required=True) or {}
    if fields.text("plan_code") is not None:
        try:
            async with ctx.db.acquire() as conn, conn.transaction():
                closed = await _new_subscription(conn, org, customer_in, fields)
                raise _RolledBack(await _render(conn, closed))
        except _RolledBack as done:
            return ok({"invoice": done.body})
    subscriptions_in = fields.mapping("subscriptions") or {}
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
            raise _RolledBack(await _render(conn, closed))
    except _RolledBack as done:
        return ok({"invoice": done.body})
