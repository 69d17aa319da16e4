"""`GET /files/...pdf`: the stored PDF behind a `file_url` (see `store.document_files`)."""

from __future__ import annotations

import uuid

from aiohttp import web

from store import document_files
from web.context import context
from web.errors import NotFound


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def file(request: web.Request) -> web.Response:
    """The PDF behind a `file_url`: whoever holds the link may read it, nobody can guess it."""
    kind = document_files.FILE_KINDS.get(request.match_info["kind"])
    try:
        object_id = uuid.UUID(request.match_info["object_id"])
    except ValueError:
        kind = None
    if kind is None:
        raise NotFound("file")
    table, column, _ = kind
    async with context(request).db.acquire() as conn:
        pdf = await conn.fetchval(
            f"SELECT pdf FROM {table} WHERE {column} = $1 AND token = $2",
            object_id,
            request.match_info["token"],
        )
    if pdf is None:
        raise NotFound("file")
    return web.Response(body=pdf, content_type="application/pdf")


def routes() -> list[web.RouteDef]:
    return [web.get("/files/{kind}/{object_id}/{token}.pdf", file)]
