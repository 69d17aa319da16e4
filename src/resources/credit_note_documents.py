"""A credit note's metadata (`/api/v1/credit_notes/{id}/metadata`: replace, merge, delete all,
delete one key) and its PDF (`POST /api/v1/credit_notes/{id}/download`: rendered once, then
served at a secret link as an invoice's is)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.document_files import base_url
from store import credit_notes
from store.credit_notes import parse_metadata
from web.errors import ValidationFailed
from web.payload import Fields, read_json

ROUTES = web.RouteTableDef()
NOTE = "/api/v1/credit_notes/{lago_id}"


async def _metadata_input(request: web.Request) -> dict[str, str | None]:
    raw = await read_json(request)
    fields = Fields(raw if isinstance(raw, dict) else {}, {"metadata"})
    metadata = parse_metadata(fields)
    if metadata is None and not fields.errors:
        fields.add("metadata", "value_is_mandatory")
    fields.check()
    assert metadata is not None
    return metadata


async def _set_metadata(
    request: web.Request, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> web.Response:
    """Apply `change(current) -> new` to the credit note's metadata and answer the result."""

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any] | None:
        return await credit_notes.change_metadata(conn, org, lago_id, change)

    return await crud.by_lago_id(request, "metadata", step)


@ROUTES.post(f"{NOTE}/metadata")
async def replace_metadata(request: web.Request) -> web.Response:
    given = await _metadata_input(request)
    return await _set_metadata(request, lambda current: given)


@ROUTES.patch(f"{NOTE}/metadata")
async def merge_metadata(request: web.Request) -> web.Response:
    given = await _metadata_input(request)
    return await _set_metadata(request, lambda current: {**current, **given})


@ROUTES.delete(f"{NOTE}/metadata")
async def delete_metadata(request: web.Request) -> web.Response:
    return await _set_metadata(request, lambda current: None)


@ROUTES.delete(f"{NOTE}/metadata/{{key}}")
async def delete_metadata_key(request: web.Request) -> web.Response:
    key = request.match_info["key"]

    def without(current: dict[str, Any]) -> dict[str, Any]:
        if key not in current:
            raise ValidationFailed({"key": ["metadata_key_not_found"]})
        return {k: v for k, v in current.items() if k != key}

    return await _set_metadata(request, without)


@ROUTES.post(f"{NOTE}/download")
async def download(request: web.Request) -> web.Response:
    url = base_url(request)

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await credit_notes.note_file(conn, org, lago_id, url)

    return await crud.by_lago_id(request, "credit_note", step)
