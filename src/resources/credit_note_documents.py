"""A credit note's metadata (`/api/v1/credit_notes/{id}/metadata`, see `resources.metadata`)
and its PDF (`POST /api/v1/credit_notes/{id}/download`: rendered once, then served at a secret
link as an invoice's is)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.document_files import base_url
from resources.metadata import Change, Metadata, metadata_routes
from store import credit_notes

ROUTES = web.RouteTableDef()
NOTE = "/api/v1/credit_notes/{lago_id}"


async def _change_metadata(
    conn: Conn, org: uuid.UUID, request: web.Request, change: Change
) -> Metadata | None:
    return await credit_notes.change_metadata(conn, org, request.match_info["lago_id"], change)


metadata_routes(ROUTES, (NOTE,), _change_metadata)


@ROUTES.post(f"{NOTE}/download")
async def download(request: web.Request) -> web.Response:
    url = base_url(request)

    async def step(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
        return await credit_notes.note_file(conn, org, lago_id, url)

    return await crud.by_lago_id(request, "credit_note", step)
