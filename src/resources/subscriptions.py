"""`/api/v1/subscriptions`: requests to `store.subscriptions`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from read_model.subscriptions import subscription_body
from resources import crud
from store import subscriptions
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import ok, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/subscriptions")
async def create(request: web.Request) -> web.Response:
    return await crud.created(request, "subscription", subscriptions.create_subscription)


def _status_param(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in subscriptions.STATUSES:
        raise ValidationFailed({"status": ["value_is_invalid"]})
    return status


@ROUTES.get("/api/v1/subscriptions/{external_id}")
async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    status = _status_param(request)
    async with ctx.db.acquire() as conn:
        row = await subscriptions.subscription_by_external_id(
            conn, org.id, request.match_info["external_id"], status=status
        )
    if row is None:
        raise NotFound("subscription")
    return ok({"subscription": subscription_body(row)})


@ROUTES.get("/api/v1/subscriptions")
@ROUTES.get("/api/v1/customers/{external_customer_id}/subscriptions")
async def find_all(request: web.Request) -> web.Response:
    statuses = request.query.getall("status[]", []) or ["active"]
    if any(s not in subscriptions.STATUSES for s in statuses):
        raise ValidationFailed({"status": ["value_is_invalid"]})
    filters = {
        "external_customer_id": crud.listed_customer(request),
        "plan_code": request.query.get("plan_code"),
        "statuses": statuses,
    }
    return await crud.answer_page(
        request, "subscriptions", subscriptions.list_subscriptions, filters
    )


@ROUTES.put("/api/v1/subscriptions/{external_id}")
async def update(request: web.Request) -> web.Response:
    status = _status_param(request)
    changes, at = subscriptions.parse_update(await read_wrapped(request, "subscription"))
    external_id = request.match_info["external_id"]

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        return await subscriptions.change_subscription(conn, org, external_id, status, changes, at)

    return await crud.answer(request, "subscription", step, publishes=True)


@ROUTES.delete("/api/v1/subscriptions/{external_id}")
async def destroy(request: web.Request) -> web.Response:
    status = _status_param(request)
    external_id = request.match_info["external_id"]

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        return await subscriptions.terminate_now(conn, org, external_id, status)

    return await crud.answer(request, "subscription", step, publishes=True)
