"""`GET /files/...pdf`: the stored PDF behind a `file_url` (see `store.document_files`)."""

from __future__ import annotations

from aiohttp import web

from store import document_files
from web.context import context
from web.errors import NotFound

ROUTES = web.RouteTableDef()


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@ROUTES.get("/files/{kind}/{object_id}/{token}.pdf")
async def file(request: web.Request) -> web.Response:
    """The PDF behind a `file_url`: whoever holds the link may read it, nobody can guess it."""
    path = request.match_info
    async with context(request).db.acquire() as conn:
        pdf = await document_files.stored_pdf(conn, path["kind"], path["object_id"], path["token"])
    if pdf is None:
        raise NotFound("file")
    return web.Response(body=pdf, content_type="application/pdf")
