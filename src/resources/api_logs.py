"""`/api/v1/api_logs`: the organization's write requests as `gateway.api_logging` recorded
them (`store.api_logs`), newest first, with Lago's filters."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store import api_logs
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, query_date

ROUTES = web.RouteTableDef()
METHODS = ("post", "put", "patch", "delete")


def _filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    errors: dict[str, list[str]] = {}
    methods = [m.lower() for m in q.getall("http_methods[]", [])]
    if any(m not in METHODS for m in methods):
        errors["http_methods"] = [INVALID]
    raw_statuses = q.getall("http_statuses[]", [])
    statuses = [int(s) for s in raw_statuses if s.isdigit()]
    if any(not s.isdigit() and s not in ("succeeded", "failed") for s in raw_statuses):
        errors["http_statuses"] = [INVALID]
    filters = {
        "from_date": query_date(request, "from_date", errors),
        "to_date": query_date(request, "to_date", errors),
        "http_methods": methods or None,
        "http_statuses": statuses if raw_statuses else None,
        "succeeded": "succeeded" in raw_statuses,
        "failed": "failed" in raw_statuses,
        "api_version": q.get("api_version") or None,
        "request_paths": q.get("request_paths") or None,
    }
    if errors:
        raise ValidationFailed(errors)
    return filters


@ROUTES.get("/api/v1/api_logs")
async def find_all(request: web.Request) -> web.Response:
    return await crud.answer_page(request, "api_logs", api_logs.list_logs, _filters(request))


@ROUTES.get("/api/v1/api_logs/{request_id}")
async def find(request: web.Request) -> web.Response:
    async def step(conn: Conn, org: uuid.UUID) -> dict[str, Any]:
        try:
            request_id = uuid.UUID(request.match_info["request_id"])
        except ValueError:
            raise NotFound("api_log") from None
        row = await api_logs.find_log(conn, org, request_id)
        if row is None:
            raise NotFound("api_log")
        return api_logs.log_body(row)

    return await crud.answer(request, "api_log", step, write=False)
