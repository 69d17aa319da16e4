"""`/api/v1/subscriptions/{external_id}/alerts[/{code}]`: a subscription's usage alerts
(`store.alerts`); `subscription_status` picks among subscriptions sharing the external id."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store import alerts, subscriptions
from web.errors import BadRequest, NotFound
from web.payload import MANDATORY, ok, read_json, read_wrapped

ROUTES = web.RouteTableDef()
ALERTS = "/api/v1/subscriptions/{external_id}/alerts"


async def _subscription(conn: Conn, org: uuid.UUID, request: web.Request) -> asyncpg.Record:
    row = await subscriptions.subscription_by_external_id(
        conn,
        org,
        request.match_info["external_id"],
        status=request.query.get("subscription_status") or None,
    )
    if row is None:
        raise NotFound("subscription")
    return row


async def _alert(
    conn: Conn, org: uuid.UUID, request: web.Request, *, lock: bool = False
) -> asyncpg.Record:
    subscription = await _subscription(conn, org, request)
    return await alerts.alert_by_code(
        conn, subscription["id"], request.match_info["code"], lock=lock
    )


@ROUTES.post(ALERTS)
async def create(request: web.Request) -> web.Response:
    """One alert (`{"alert": {...}}`, answered the same way) or several at once
    (`{"alerts": [...]}`, all or none)."""
    body = await read_json(request)
    if not isinstance(body, dict) or not ({"alert", "alerts"} & body.keys()):
        raise BadRequest({"alert": [MANDATORY]})
    many = "alerts" in body
    raws = body["alerts"] if many else [await read_wrapped(request, "alert")]
    if not isinstance(raws, list) or not raws:
        raise BadRequest({"alerts": ["value_is_invalid"]})

    async def step(conn: Conn, org: uuid.UUID) -> list[dict[str, Any]]:
        subscription = await _subscription(conn, org, request)
        return await alerts.create_alerts(conn, org, subscription, raws)

    created = await crud.run(request, step, write=True)
    return ok({"alerts": created} if many else {"alert": created[0]})


@ROUTES.get(ALERTS)
async def find_all(request: web.Request) -> web.Response:
    async def pager(
        conn: Conn, org: uuid.UUID, filters: None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        rows = await alerts.alerts_of(conn, (await _subscription(conn, org, request))["id"])
        return await alerts.alert_bodies(conn, rows[offset : offset + limit]), len(rows)

    return await crud.answer_page(request, "alerts", pager, None)


@ROUTES.delete(ALERTS)
async def delete_all(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> list[dict[str, Any]]:
        subscription = await _subscription(conn, org, request)
        return await alerts.delete_alerts(conn, await alerts.alerts_of(conn, subscription["id"]))

    return await crud.answer(request, "alerts", step)


@ROUTES.get(ALERTS + "/{code}")
async def find(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        return (await alerts.alert_bodies(conn, [await _alert(conn, org, request)]))[0]

    return await crud.answer(request, "alert", step, write=False)


@ROUTES.put(ALERTS + "/{code}")
async def update(request: web.Request) -> web.Response:
    raw = await read_wrapped(request, "alert")

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        alert = await _alert(conn, org, request, lock=True)
        return await alerts.change_alert(conn, org, alert, raw)

    return await crud.answer(request, "alert", step)


@ROUTES.delete(ALERTS + "/{code}")
async def delete(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        alert = await _alert(conn, org, request, lock=True)
        return (await alerts.delete_alerts(conn, [alert]))[0]

    return await crud.answer(request, "alert", step)
