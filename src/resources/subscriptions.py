"""`/api/v1/subscriptions`: requests to `store.subscriptions`, Lago JSON back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from meterflow import db, webhook_outbox
from read_model.subscriptions import subscription_body
from resources import crud
from store import records, subscriptions
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, ok, read_wrapped


async def create(request: web.Request) -> web.Response:
    raw = await read_wrapped(request, "subscription")
    body = await subscriptions.create_subscription(context(request), organization(request), raw)
    return ok({"subscription": body})


def _status_param(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in subscriptions.STATUSES:
        raise ValidationFailed({"status": ["value_is_invalid"]})
    return status


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


async def find_all(request: web.Request) -> web.Response:
    statuses = request.query.getall("status[]", []) or ["active"]
    if any(s not in subscriptions.STATUSES for s in statuses):
        raise ValidationFailed({"status": ["value_is_invalid"]})
    filters = {
        "external_customer_id": request.query.get("external_customer_id"),
        "plan_code": request.query.get("plan_code"),
        "statuses": statuses,
    }
    return await crud.answer_page(
        request, "subscriptions", subscriptions.list_subscriptions, filters
    )


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    status = _status_param(request)
    fields = Fields(await read_wrapped(request, "subscription"), subscriptions.UPDATE_FIELDS)
    changes: dict[str, Any] = {}
    if fields.has("name"):
        changes["name"] = fields.text("name")
    if fields.has("ending_at"):
        changes["ending_at"] = fields.instant("ending_at")
    subscription_at = fields.instant("subscription_at")
    subscriptions.refuse_unsupported(fields)
    fields.check()
    async with db.unit_of_work(ctx.db) as conn:
        row = await subscriptions.subscription_by_external_id(
            conn, org.id, request.match_info["external_id"], status=status
        )
        if row is None:
            raise NotFound("subscription")
        if subscription_at is not None:
            if row["status"] != "pending":
                raise ValidationFailed({"subscription_at": ["cannot_change_started_subscription"]})
            changes["subscription_at"] = subscription_at
            if subscription_at <= datetime.now(UTC):
                changes["status"] = "active"
                changes["started_at"] = subscription_at
        if not changes:
            return ok({"subscription": subscription_body(row)})
        await subscriptions.update_subscription(conn, row["id"], changes)
        body = await records.enqueue_subscription(conn, row["id"])
        if changes.get("status") == "active":
            await webhook_outbox.emit(conn, org.id, "subscription.started", row["id"], body)
    await ctx.catalog.drain_quietly()
    return ok({"subscription": body})


async def destroy(request: web.Request) -> web.Response:
    """Terminate now (Lago's DELETE): the subscription stays readable with its end time."""
    ctx, org = context(request), organization(request)
    status = _status_param(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await subscriptions.subscription_by_external_id(
            conn, org.id, request.match_info["external_id"], status=status
        )
        if row is None or row["status"] not in ("active", "pending"):
            raise NotFound("subscription")
        body = await subscriptions.terminate(conn, row["id"])
    await ctx.catalog.drain_quietly()
    return ok({"subscription": body})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/subscriptions", create),
        web.get("/api/v1/subscriptions", find_all),
        web.get("/api/v1/subscriptions/{external_id}", find),
        web.put("/api/v1/subscriptions/{external_id}", update),
        web.delete("/api/v1/subscriptions/{external_id}", destroy),
    ]
