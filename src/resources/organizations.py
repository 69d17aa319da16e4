"""`/api/v1/organizations`: requests to `store.organizations`, Lago JSON back."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store import organizations
from web.context import context, organization
from web.payload import read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.put("/api/v1/organizations")
async def update(request: web.Request) -> web.Response:
    """Change the caller's organization. A new timezone is republished with every customer
    that has none of its own and their live subscriptions (their periods follow it)."""
    given = organizations.parse_settings(await read_wrapped(request, "organization"))
    ctx = context(request)

    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        return await organizations.change_settings(conn, org, given)

    answer = await crud.answer(request, "organization", step, publishes=True)
    ctx.keys.forget(organization(request).id)
    return answer
