"""`/api/v1/organizations`: requests to `store.organizations`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from store import organizations, records, subscriptions, taxes
from web.context import context, organization
from web.payload import ok, read_wrapped


async def update(request: web.Request) -> web.Response:
    """Change the caller's organization. A new timezone is republished with every customer
    that has none of its own and their live subscriptions (their periods follow it)."""
    ctx, org = context(request), organization(request)
    given = organizations.parse_settings(await read_wrapped(request, "organization"))
    async with db.unit_of_work(ctx.db) as conn:
        current = await organizations.organization_row(conn, org.id, lock=True)
        attributes = {**(current["attributes"] or {}), **given}
        attributes.pop("timezone", None)
        if "billing_configuration" in given:
            attributes["billing_configuration"] = {
                **((current["attributes"] or {}).get("billing_configuration") or {}),
                **given["billing_configuration"],
            }
        timezone = given.get("timezone") or current["timezone"]
        row = await organizations.update_organization(conn, org.id, timezone, attributes)
        await organizations.enqueue_organization(conn, row)
        if timezone != current["timezone"]:
            for customer_id in await organizations.bump_customers_on_organization_timezone(
                conn, org.id
            ):
                await records.enqueue_customer(conn, customer_id)
            for (
                subscription_id
            ) in await organizations.live_subscription_ids_on_organization_timezone(conn, org.id):
                await subscriptions.bump_subscription(conn, subscription_id)
                await records.enqueue_subscription(conn, subscription_id)
        applied = await taxes.organization_taxes(conn, org.id)
    ctx.keys.forget(org.id)
    await ctx.catalog.drain_quietly()
    return ok({"organization": organizations.settings_body(row, applied)})


def routes() -> list[web.RouteDef]:
    return [web.put("/api/v1/organizations", update)]
