"""`/api/v1/plans`: requests to `store.plans`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from resources import crud
from store import charges, database, records, subscriptions, taxes
from store.plans import (
    PLAN_FIELDS,
    current_plan,
    delete_plan,
    insert_plan,
    list_plans,
    plan_by_code,
    plan_columns,
    plan_fields,
    plan_in_use,
    set_taxes,
    update_plan,
    with_taxes,
)
from store.taxes import check_tax_codes
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import (
    Fields,
    ok,
    page_params,
    pagination_meta,
    read_wrapped,
)


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "plan"), PLAN_FIELDS)
    raw_charges = fields.array("charges") or []
    async with db.unit_of_work(ctx.db) as conn:
        known = await taxes.known_tax_codes(conn, org.id, fields.raw.get("tax_codes"))
        check_tax_codes(fields.raw.get("tax_codes"), known)
        plan = plan_fields(fields, None, known)
        new_charges = await charges.parse_charges(conn, org.id, fields, raw_charges, set())
        fields.check()
        await database.claim_code(conn, org.id, "plan", plan["code"], plan_by_code)
        plan_id = await insert_plan(conn, org.id, plan_columns(plan))
        await charges.replace_charges(conn, plan_id, new_charges)
        await set_taxes(conn, org.id, plan_id, plan.get("tax_codes"))
        body = (await with_taxes(conn, [await records.enqueue_plan(conn, plan_id)]))[0]
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


async def update(request: web.Request) -> web.Response:
    """Change the plan; when `charges` is given it becomes the plan's full charge list
    (a charge keeps its lago_id when its `id` is sent back)."""
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "plan"), PLAN_FIELDS)
    raw_charges = fields.array("charges")
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "plan", plan_by_code)
        known = await taxes.known_tax_codes(conn, org.id, fields.raw.get("tax_codes"))
        check_tax_codes(fields.raw.get("tax_codes"), known)
        plan = plan_fields(fields, current_plan(row), known)
        new_charges = None
        if raw_charges is not None:
            existing = await charges.charge_ids_of(conn, row["id"])
            new_charges = await charges.parse_charges(conn, org.id, fields, raw_charges, existing)
        fields.check()
        code_changed = plan["code"] != row["code"]
        if code_changed:
            await database.claim_code(conn, org.id, "plan", plan["code"], plan_by_code)
        await update_plan(conn, row["id"], plan_columns(plan))
        if new_charges is not None:
            await charges.replace_charges(conn, row["id"], new_charges)
        await set_taxes(conn, org.id, row["id"], plan.get("tax_codes"))
        body = (await with_taxes(conn, [await records.enqueue_plan(conn, row["id"])]))[0]
        # Subscriptions carry their plan's code, amount and interval: republish them.
        for subscription_id in await subscriptions.live_subscription_ids_of_plan(conn, row["id"]):
            await subscriptions.bump_subscription(conn, subscription_id)
            await records.enqueue_subscription(conn, subscription_id)
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await plan_by_code(conn, org.id, request.match_info["code"])
        if row is None:
            raise NotFound("plan")
        body = (await with_taxes(conn, await records.plan_bodies(conn, [row])))[0]
    return ok({"plan": body})


async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        rows, total = await list_plans(conn, org.id, per_page, (page - 1) * per_page)
        bodies = await with_taxes(conn, await records.plan_bodies(conn, rows))
    return ok({"plans": bodies, "meta": pagination_meta(page, per_page, total)})


async def destroy(request: web.Request) -> web.Response:
    """Delete a plan no live subscription uses (Lago terminates them; meterflow asks the
    caller to terminate them first, so no usage is dropped by surprise)."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "plan", plan_by_code)
        if await plan_in_use(conn, row["id"]):
            raise ValidationFailed({"plan": ["attached_to_live_subscriptions"]})
        body = (await with_taxes(conn, await records.plan_bodies(conn, [row])))[0]
        await delete_plan(conn, row["id"])
        await records.enqueue_plan(conn, row["id"])
    await ctx.catalog.drain_quietly()
    return ok({"plan": body})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/plans", create),
        web.get("/api/v1/plans", find_all),
        web.get("/api/v1/plans/{code}", find),
        web.put("/api/v1/plans/{code}", update),
        web.delete("/api/v1/plans/{code}", destroy),
    ]
