"""The `metadata` sub-resource Lago gives credit notes, plans and wallets (`{object}/metadata`:
replace, merge, delete all, delete one key), written once over each object's own change."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from store.credit_notes import parse_metadata
from web.errors import ValidationFailed
from web.payload import Fields, read_json

Metadata = dict[str, Any]
Change = Callable[[Metadata], Metadata | None]
Apply = Callable[[Conn, uuid.UUID, web.Request, Change], Awaitable[Metadata | None]]
"""Lock the object the request's path names, store `change(its metadata)` and return it."""


async def _given(request: web.Request) -> Metadata:
    raw = await read_json(request)
    fields = Fields(raw if isinstance(raw, dict) else {}, {"metadata"})
    metadata = parse_metadata(fields)
    if metadata is None and not fields.errors:
        fields.add("metadata", "value_is_mandatory")
    fields.check()
    assert metadata is not None
    return metadata


def _without(key: str) -> Change:
    def change(current: Metadata) -> Metadata:
        if key not in current:
            raise ValidationFailed({"key": ["metadata_key_not_found"]})
        return {k: v for k, v in current.items() if k != key}

    return change


def metadata_routes(
    routes: web.RouteTableDef, paths: tuple[str, ...], apply: Apply, *, publishes: bool = False
) -> None:
    """The four metadata routes under each of `paths` (the object's own path); `publishes`:
    the object is on the catalog topic, so its queued change goes to Kafka before the answer."""

    async def answer(request: web.Request, change: Change) -> web.Response:
        async def step(conn: Conn, org: uuid.UUID) -> Metadata | None:
            return await apply(conn, org, request, change)

        return await crud.answer(request, "metadata", step, publishes=publishes)

    async def replace(request: web.Request) -> web.Response:
        given = await _given(request)
        return await answer(request, lambda current: given)

    async def merge(request: web.Request) -> web.Response:
        given = await _given(request)
        return await answer(request, lambda current: {**current, **given})

    async def delete_all(request: web.Request) -> web.Response:
        return await answer(request, lambda current: None)

    async def delete_key(request: web.Request) -> web.Response:
        return await answer(request, _without(request.match_info["key"]))

    for path in paths:
        routes.post(f"{path}/metadata")(replace)
        routes.patch(f"{path}/metadata")(merge)
        routes.delete(f"{path}/metadata")(delete_all)
        routes.delete(f"{path}/metadata/{{key}}")(delete_key)
