"""`/api/v1/billable_metrics`: requests to `store.billable_metrics`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from resources import crud
from store import database, plans, records
from store.billable_metrics import (
    billable_metric_by_code,
    current_metric,
    delete_billable_metric,
    insert_billable_metric,
    list_billable_metrics,
    metric_columns,
    parse_metric,
    plans_using_metric,
    update_billable_metric,
)
from web.context import context, organization
from web.payload import ok, read_wrapped


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    metric = parse_metric(await read_wrapped(request, "billable_metric"))
    async with db.unit_of_work(ctx.db) as conn:
        await database.claim_code(
            conn, org.id, "billable_metric", metric["code"], billable_metric_by_code
        )
        metric_id = await insert_billable_metric(conn, org.id, metric_columns(metric))
        body = await records.enqueue_billable_metric(conn, metric_id)
    await ctx.catalog.drain_quietly()
    return ok({"billable_metric": body})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "billable_metric")
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "billable_metric", billable_metric_by_code)
        metric = parse_metric(raw, current_metric(row))
        code_changed = metric["code"] != row["code"]
        if code_changed:
            await database.claim_code(
                conn, org.id, "billable_metric", metric["code"], billable_metric_by_code
            )
        await update_billable_metric(conn, row["id"], metric_columns(metric))
        body = await records.enqueue_billable_metric(conn, row["id"])
        # Plans nest their charges' metric code: republish them when it changes.
        if code_changed:
            for plan_id in await plans_using_metric(conn, row["id"]):
                await plans.bump_plan(conn, plan_id)
                await records.enqueue_plan(conn, plan_id)
    await ctx.catalog.drain_quietly()
    return ok({"billable_metric": body})


async def find(request: web.Request) -> web.Response:
    return await crud.find_by_code(
        request, "billable_metric", billable_metric_by_code, records.billable_metric_body
    )


async def find_all(request: web.Request) -> web.Response:
    return await crud.find_page(
        request, "billable_metrics", list_billable_metrics, records.billable_metric_body
    )


async def destroy(request: web.Request) -> web.Response:
    """Delete the metric and, as Lago does, the charges built on it (their plans republish)."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "billable_metric", billable_metric_by_code)
        body = records.billable_metric_body(row)
        plan_ids = await delete_billable_metric(conn, row["id"])
        await records.enqueue_billable_metric(conn, row["id"])
        for plan_id in plan_ids:
            await plans.bump_plan(conn, plan_id)
            await records.enqueue_plan(conn, plan_id)
    await ctx.catalog.drain_quietly()
    return ok({"billable_metric": body})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/billable_metrics", create),
        web.get("/api/v1/billable_metrics", find_all),
        web.get("/api/v1/billable_metrics/{code}", find),
        web.put("/api/v1/billable_metrics/{code}", update),
        web.delete("/api/v1/billable_metrics/{code}", destroy),
    ]
