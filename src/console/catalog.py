"""The organization's plans, billable metrics, coupons and add-ons, listed as the API
returns them (creating them stays the API's job)."""

from __future__ import annotations

from aiohttp import web

from console.pages import PREFIX, api, show, signed_in
from console.sessions import Viewer
from store import billable_metrics, records
from store.add_ons import list_add_ons
from store.coupons import coupon_body, list_coupons
from store.plans import list_plans

LIST_ROWS = 100


@signed_in
async def plans(request: web.Request, viewer: Viewer) -> web.Response:
    async with api(request).db.acquire() as conn:
        rows, total = await list_plans(conn, viewer.organization.id, LIST_ROWS, 0)
        bodies = await records.plan_bodies(conn, rows)
    return show(request, viewer, "plans.html", section="plans", plans=bodies, total=total)


@signed_in
async def metrics(request: web.Request, viewer: Viewer) -> web.Response:
    async with api(request).db.acquire() as conn:
        rows, total = await billable_metrics.list_billable_metrics(
            conn, viewer.organization.id, LIST_ROWS, 0
        )
    bodies = [records.billable_metric_body(r) for r in rows]
    return show(request, viewer, "metrics.html", section="metrics", metrics=bodies, total=total)


@signed_in
async def coupons(request: web.Request, viewer: Viewer) -> web.Response:
    async with api(request).db.acquire() as conn:
        rows, total = await list_coupons(conn, viewer.organization.id, LIST_ROWS, 0)
    bodies = [coupon_body(r) for r in rows]
    return show(request, viewer, "coupons.html", section="coupons", coupons=bodies, total=total)


@signed_in
async def add_ons(request: web.Request, viewer: Viewer) -> web.Response:
    async with api(request).db.acquire() as conn:
        bodies, total = await list_add_ons(conn, viewer.organization.id, LIST_ROWS, 0)
    return show(request, viewer, "add_ons.html", section="add_ons", add_ons=bodies, total=total)


def routes() -> list[web.RouteDef]:
    return [
        web.get(f"{PREFIX}/plans", plans),
        web.get(f"{PREFIX}/metrics", metrics),
        web.get(f"{PREFIX}/coupons", coupons),
        web.get(f"{PREFIX}/add_ons", add_ons),
    ]
