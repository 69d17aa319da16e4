"""The customer's Actions: assign a plan, apply a coupon, add prepaid credits, invoice an
add-on, record a payment, add a usage alert. Each form is
turned into the API's input object and handed to the API's own function, so every rule
(and every error code, said beside its field) is the API's."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from billing.money import minor_units
from console.customers import customer_id_of, customer_of
from console.messages import field_errors, say
from console.pages import CUSTOMER, PREFIX, api, form, redirect, show, signed_in
from console.rendering import money
from console.sessions import Viewer
from meterflow import db
from store import (
    alerts,
    applied_coupons,
    billable_metrics,
    coupons,
    one_off_invoices,
    payments,
    plans,
    subscriptions,
    wallets,
)
from store.add_ons import list_add_ons
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed

Options = list[tuple[str, str]]


@dataclass(frozen=True)
class Field:
    """One input of an action form; `options` makes it a select."""

    name: str
    label: str
    type: str = "text"
    required: bool = False
    hint: str | None = None
    options: Options | None = None


@dataclass
class Action:
    title: str
    verb: str
    fields: list[Field] = field(default_factory=list)
    note: str | None = None


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _input(
    data: Mapping[str, Any], names: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The form's fields as the API's input: each of `names` (None when left blank, for the
    API to say what is missing), each of `optional` only when filled in."""
    raw = {name: _text(data, name) for name in names}
    raw.update({name: _text(data, name) for name in optional if _text(data, name) is not None})
    return raw


def _local_instant(value: str | None, zone: str) -> str | None:
    """A `datetime-local` value read in the customer's timezone, as ISO 8601 with offset."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone)).isoformat()
    except ValueError:
        return value  # the API's own check says it is not a date


async def _plan_options(ctx: IngestContext, org: Organization) -> Options:
    async with ctx.db.acquire() as conn:
        rows, _ = await plans.list_plans(conn, org.id, 100, 0)
    return [(r["code"], f"{r['name']} ({r['code']}, {r['interval']})") for r in rows]


async def _coupon_options(ctx: IngestContext, org: Organization) -> Options:
    async with ctx.db.acquire() as conn:
        rows, _ = await coupons.list_coupons(conn, org.id, 100, 0)
    return [(r["code"], f"{r['name']} ({r['code']})") for r in rows if r["status"] == "active"]


async def _add_on_options(ctx: IngestContext, org: Organization) -> Options:
    async with ctx.db.acquire() as conn:
        bodies, _ = await list_add_ons(conn, org.id, 100, 0)
    return [
        (b["code"], f"{b['name']} ({b['code']}, {b['amount_cents']} {b['amount_currency']} cents)")
        for b in bodies
    ]


async def _payable(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> list[Any]:
    async with ctx.db.acquire() as conn:
        return await payments.payable_invoices(conn, org.id, uuid.UUID(customer["lago_id"]))


def _in_cents(amount: str | None, currency: str | None) -> Any:
    """An amount in the currency's units as its smallest unit (150.5 EUR: 15050); what is no
    such amount is passed on as it is, for the API to refuse it."""
    if amount is None or currency is None:
        return amount
    try:
        cents = Decimal(amount).scaleb(minor_units(currency))
    except InvalidOperation:
        return amount
    return int(cents) if cents == cents.to_integral_value() else amount


async def _record_payment(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    raw = _input(data, ("invoice_id", "reference"), ("paid_at",))
    currency = {str(i["id"]): i["currency"] for i in await _payable(ctx, org, customer)}
    raw["amount_cents"] = _in_cents(_text(data, "amount"), currency.get(raw["invoice_id"] or ""))
    try:
        await payments.create_payment(ctx, org, raw)
    except ValidationFailed as exc:  # the amount is this form's `amount`
        details = {
            ("amount" if k == "amount_cents" else k): v for k, v in exc.error_details.items()
        }
        raise ValidationFailed(details) from exc


async def _assign_plan(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    raw = _input(data, ("plan_code", "external_id", "name", "billing_time"))
    raw["external_customer_id"] = customer["external_id"]
    raw["billing_time"] = raw["billing_time"] or "calendar"
    start = _local_instant(_text(data, "subscription_at"), customer["applicable_timezone"])
    if start is not None:
        raw["subscription_at"] = start
    await subscriptions.create_subscription(ctx, org, raw)


async def _apply_coupon(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    raw = _input(data, ("coupon_code",))
    raw["external_customer_id"] = customer["external_id"]
    await applied_coupons.apply_coupon(ctx, org, raw)


async def _add_wallet(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    optional = ("name", "code", "paid_credits", "granted_credits")
    raw = _input(data, ("currency", "rate_amount"), optional)
    await wallets.create_wallet(ctx, org, raw, customer["external_id"])


async def _add_add_on(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    fee = _input(data, ("add_on_code",), ("units", "description"))
    raw = {"external_customer_id": customer["external_id"], "fees": [fee]}
    try:
        await one_off_invoices.create_one_off_invoice(ctx, org, raw)
    except ValidationFailed as exc:  # the fee's fields are this form's fields
        details = {k.removeprefix("fees.0."): v for k, v in exc.error_details.items()}
        raise ValidationFailed(details) from exc


async def _plan_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    zone = customer["applicable_timezone"]
    return Action(
        "Assign a plan",
        "Assign plan",
        [
            Field("plan_code", "Plan", required=True, options=await _plan_options(ctx, org)),
            Field("name", "Subscription name"),
            Field(
                "external_id",
                "Subscription external ID",
                required=True,
                hint="The subscription's ID in your system; events name it.",
            ),
            Field(
                "subscription_at",
                "Start",
                type="datetime-local",
                hint=f"In the customer's timezone ({zone}); blank: now. A future start is pending.",
            ),
            Field(
                "billing_time",
                "Billing",
                options=[
                    ("calendar", "Calendar (periods start on the 1st)"),
                    ("anniversary", "Anniversary (periods start on the start date)"),
                ],
            ),
        ],
    )


async def _coupon_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    options = await _coupon_options(ctx, org)
    return Action(
        "Apply a coupon",
        "Apply coupon",
        [Field("coupon_code", "Coupon", required=True, options=options)],
    )


async def _add_on_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    return Action(
        "Add an add-on",
        "Invoice add-on",
        [
            Field("add_on_code", "Add-on", required=True, options=await _add_on_options(ctx, org)),
            Field("units", "Units", type="number", hint="Default 1."),
            Field("description", "Description", hint="Shown on the invoice."),
        ],
        "A one-off invoice is issued at once, finalized, with this add-on's fee.",
    )


async def _payment_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    options = [
        (str(i["id"]), f"{i['number']} ({money(i['due'], i['currency'])} due)")
        for i in await _payable(ctx, org, customer)
    ]
    return Action(
        "Record a payment",
        "Record payment",
        [
            Field("invoice_id", "Invoice", required=True, options=options),
            Field("amount", "Amount", required=True, hint="In the invoice's currency, e.g. 150.00"),
            Field("reference", "Reference", required=True, hint="The transfer's or cheque's."),
            Field("paid_at", "Paid on", type="date", hint="Blank: today."),
        ],
        "Money the customer paid outside meterflow. Once nothing is left due, the invoice is paid.",
    )


async def _wallet_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    return Action(
        "Add prepaid credits",
        "Add wallet",
        [
            Field("name", "Wallet name"),
            Field("code", "Wallet code"),
            Field("currency", "Currency", required=True),
            Field(
                "rate_amount", "Value of one credit", required=True, hint="In the currency, e.g. 1"
            ),
            Field("paid_credits", "Paid credits", type="number"),
            Field(
                "granted_credits",
                "Granted credits",
                type="number",
                hint="Free credits, consumed first.",
            ),
        ],
    )


_ALERT_TYPES = [
    ("current_usage_amount", "Usage amount of the period"),
    ("billable_metric_current_usage_amount", "Amount of one metric in the period"),
    ("billable_metric_current_usage_units", "Units of one metric in the period"),
    ("lifetime_usage_amount", "Usage amount of the subscription's whole life"),
]


async def _alert_form(ctx: IngestContext, org: Organization, customer: dict[str, Any]) -> Action:
    async with ctx.db.acquire() as conn:
        subs, _ = await subscriptions.list_subscriptions(
            conn, org.id, {"external_customer_id": customer["external_id"]}, 100, 0
        )
        metrics, _ = await billable_metrics.BILLABLE_METRICS.listing(conn, org.id, 100, 0)
    return Action(
        "Add a usage alert",
        "Add alert",
        [
            Field(
                "external_subscription_id",
                "Subscription",
                required=True,
                options=[(s["external_id"], s["name"] or s["external_id"]) for s in subs],
            ),
            Field("alert_type", "Watches", required=True, options=_ALERT_TYPES),
            Field(
                "billable_metric_code",
                "Metric",
                hint="Only for the two kinds about one metric.",
                options=[("", "-"), *((m["code"], f"{m['name']} ({m['code']})") for m in metrics)],
            ),
            Field("code", "Alert code", required=True),
            Field("name", "Alert name"),
            Field(
                "thresholds",
                "Thresholds",
                required=True,
                hint="Comma-separated, e.g. 50.00, 100.00: amounts in the plan's currency, "
                "or units.",
            ),
            Field("recurring", "Then again every", hint="Optional: repeats above the highest."),
        ],
        "Checked every few seconds against the live usage; each crossing is sent once as the "
        "webhook alert.triggered.",
    )


async def _add_alert(
    ctx: IngestContext, org: Organization, customer: dict[str, Any], data: Mapping[str, Any]
) -> None:
    raw = _input(data, ("alert_type", "code"), ("name", "billable_metric_code"))
    external_id = _text(data, "external_subscription_id") or ""
    async with db.unit_of_work(ctx.db) as conn:
        subscription = await subscriptions.subscription_by_external_id(conn, org.id, external_id)
        if subscription is None or subscription["customer_id"] != uuid.UUID(customer["lago_id"]):
            raise ValidationFailed({"external_subscription_id": ["value_is_mandatory"]})
        units = raw["alert_type"] == "billable_metric_current_usage_units"
        currency = None if units else subscription["plan_amount_currency"]
        entered = [v.strip() for v in (_text(data, "thresholds") or "").split(",") if v.strip()]
        every = _text(data, "recurring")
        thresholds = [{"value": _in_cents(v, currency)} for v in entered]
        if every is not None:
            thresholds.append({"value": _in_cents(every, currency), "recurring": True})
        if currency is not None and not all(isinstance(t["value"], int) for t in thresholds):
            raise ValidationFailed({"thresholds": ["value_is_invalid"]})  # not whole cents
        raw["thresholds"] = thresholds
        try:
            await alerts.create_alerts(conn, org.id, subscription, [raw])
        except ValidationFailed as exc:  # a threshold's problem is the thresholds field's
            details = {
                ("thresholds" if k.startswith("thresholds") else k): v
                for k, v in exc.error_details.items()
            }
            raise ValidationFailed(details) from exc


FormBuilder = Callable[[IngestContext, Organization, dict[str, Any]], Awaitable[Action]]
Apply = Callable[[IngestContext, Organization, dict[str, Any], Mapping[str, Any]], Awaitable[None]]
_ERROR_FIELDS = {
    "plan": "plan_code",
    "coupon": "coupon_code",
    "add_on": "add_on_code",
    "invoice": "invoice_id",
    "billable_metric": "billable_metric_code",
}


def _defaults(kind: str, customer: dict[str, Any]) -> dict[str, Any]:
    if kind == "wallets":
        return {"currency": customer.get("currency") or "", "rate_amount": "1"}
    return {"billing_time": "calendar"}


def _pages(kind: str, build: FormBuilder, apply: Apply, done_tab: str) -> tuple[Any, Any]:
    async def page(
        request: web.Request,
        viewer: Viewer,
        customer: dict[str, Any],
        values: Mapping[str, Any],
        errors: dict[str, list[str]],
        status: int = 200,
    ) -> web.Response:
        action = await build(api(request), viewer.organization, customer)
        return show(
            request,
            viewer,
            "action_form.html",
            status=status,
            section="customers",
            customer=customer,
            tab=None,
            locked=None,
            action=action,
            kind=kind,
            values=values,
            errors=errors,
        )

    @signed_in
    async def show_form(request: web.Request, viewer: Viewer) -> web.Response:
        customer = await customer_of(request, viewer, customer_id_of(request))
        return await page(request, viewer, customer, _defaults(kind, customer), {})

    @signed_in
    async def submit(request: web.Request, viewer: Viewer) -> web.StreamResponse:
        data = await form(request, viewer)
        customer = await customer_of(request, viewer, customer_id_of(request))
        action = await build(api(request), viewer.organization, customer)
        names = [f.name for f in action.fields]
        try:
            await apply(api(request), viewer.organization, customer, data)
        except ValidationFailed as exc:
            errors = field_errors(exc.error_details, names)
        except NotFound as exc:
            what = exc.code.removesuffix("_not_found")
            errors = {_ERROR_FIELDS.get(what, ""): [say(exc.code)]}
        else:
            raise redirect(f"{PREFIX}/customers/{customer['lago_id']}{done_tab}")
        values = {name: data.get(name, "") for name in names}
        return await page(request, viewer, customer, values, errors, status=422)

    return show_form, submit


def _action_routes() -> web.RouteTableDef:
    """Each action's form (`GET .../{kind}/new`) and its submission (`POST`, same path)."""
    table = web.RouteTableDef()
    for kind, build, apply, done in (
        ("subscriptions", _plan_form, _assign_plan, ""),
        ("coupons", _coupon_form, _apply_coupon, "/coupons"),
        ("wallets", _wallet_form, _add_wallet, "/wallets"),
        ("add_ons", _add_on_form, _add_add_on, "/invoices"),
        ("payments", _payment_form, _record_payment, "/invoices"),
        ("alerts", _alert_form, _add_alert, "/usage"),
    ):
        show_form, submit = _pages(kind, build, apply, done)
        table.get(f"{CUSTOMER}/{kind}/new")(show_form)
        table.post(f"{CUSTOMER}/{kind}/new")(submit)
    return table


ROUTES = _action_routes()
