"""`/api/v1/plans`: the five code-keyed routes over `store.plans`, a plan's charges one at a
time (`store.plan_charges`) and its metadata."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.metadata import Change, Metadata, metadata_routes
from store import code_keyed, plan_charges
from store.plans import PLANS
from web.payload import read_wrapped

ROUTES = crud.code_keyed_routes(PLANS)
PLAN = "/api/v1/plans/{code}"
CHARGE = PLAN + "/charges/{charge_code}"


async def _change_metadata(
    conn: Conn, org: uuid.UUID, request: web.Request, change: Change
) -> Metadata | None:
    """A plan update naming only `metadata`: versioned and published like any other."""
    current = await crud.named(PLANS, conn, org, request, lock=True)
    metadata = change(dict(current["attributes"].get("metadata") or {}))
    body = await code_keyed.update(PLANS, conn, org, current, {"metadata": metadata})
    result: Metadata | None = body["metadata"]
    return result


metadata_routes(ROUTES, (PLAN,), _change_metadata, publishes=True)


@ROUTES.get(PLAN + "/charges")
async def find_all_charges(request: web.Request) -> web.Response:
    async def pager(
        conn: Conn, org: uuid.UUID, filters: None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        plan = await crud.named(PLANS, conn, org, request, lock=False)
        charges = await plan_charges.plan_charges(conn, plan)
        return charges[offset : offset + limit], len(charges)

    return await crud.answer_page(request, "charges", pager, None)


@ROUTES.get(CHARGE)
async def find_charge(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        plan = await crud.named(PLANS, conn, org, request, lock=False)
        return await plan_charges.plan_charge(conn, plan, request.match_info["charge_code"])

    return await crud.answer(request, "charge", step, write=False)


@ROUTES.post(PLAN + "/charges")
async def create_charge(request: web.Request) -> web.Response:
    raw = await read_wrapped(request, "charge")

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        plan = await crud.named(PLANS, conn, org, request, lock=True)
        return await plan_charges.add_charge(conn, org, plan, raw)

    return await crud.answer(request, "charge", step, publishes=True)


@ROUTES.put(CHARGE)
async def update_charge(request: web.Request) -> web.Response:
    raw = await read_wrapped(request, "charge")

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        plan = await crud.named(PLANS, conn, org, request, lock=True)
        code = request.match_info["charge_code"]
        return await plan_charges.change_charge(conn, org, plan, code, raw)

    return await crud.answer(request, "charge", step, publishes=True)


@ROUTES.delete(CHARGE)
async def delete_charge(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        plan = await crud.named(PLANS, conn, org, request, lock=True)
        code = request.match_info["charge_code"]
        return await plan_charges.remove_charge(conn, org, plan, code)

    return await crud.answer(request, "charge", step, publishes=True)
