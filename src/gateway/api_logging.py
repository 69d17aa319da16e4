"""API logs: a middleware recording each write request an organization's API key made (POST,
PUT, PATCH, DELETE under /api/v1, events excepted: they are the high-volume path and are
read back from their topic) with the body and the answer (`store.api_logs`), its id sent
back as `X-Request-Id`; and the hourly purge of the logs past their retention."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from store import api_logs
from web.context import CONTEXT, ORGANIZATION
from web.middleware import Handler

log = logging.getLogger(__name__)

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
MAX_LOGGED_BYTES = 64 * 1024
PURGE_EVERY = 3600.0


def _logged(request: web.Request) -> bool:
    path = request.path
    return (
        request.method in WRITES
        and path.startswith("/api/v1/")
        and not path.startswith("/api/v1/events")
    )


def _json(raw: bytes | None) -> Any:
    """A body as JSON to keep: the object itself, `{}` for none, or what it was when it is
    too large or not JSON."""
    if not raw:
        return {}
    if len(raw) > MAX_LOGGED_BYTES:
        return {"truncated": True, "bytes": len(raw)}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"not_json": raw[:1000].decode("utf-8", "replace")}


@web.middleware
async def api_logged(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the write request once answered (in Lago's shape, errors included); a failure
    to record it is logged and never changes the answer."""
    if not _logged(request):
        return await handler(request)
    response = await handler(request)
    org = request.get(ORGANIZATION)
    if org is None:  # refused before its key named an organization: nobody's log
        return response
    request_id = uuid.uuid4()
    response.headers["X-Request-Id"] = str(request_id)
    body = response.body if isinstance(response, web.Response) else None
    entry = {
        "client": request.headers.get("User-Agent", "")[:255],
        "http_method": request.method.lower(),
        "http_status": response.status,
        "request_origin": f"{request.scheme}://{request.host}/",
        "request_path": request.path.removeprefix("/api/v1"),
        "request_body": _json(await request.read()),
        "request_response": _json(body if isinstance(body, bytes) else None),
    }
    try:
        async with request.app[CONTEXT].db.acquire() as conn:
            await api_logs.insert_log(conn, org.id, request_id, entry)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("api_log.not_recorded request_id=%s error=%r", request_id, exc)
    return response


async def purge_loop(pool: asyncpg.Pool, days: int) -> None:
    """Delete the logs older than `days` days, now and every hour, until cancelled."""
    while True:
        try:
            async with pool.acquire() as conn:
                purged = await api_logs.purge(conn, days)
            if purged:
                log.info("api_log.purged rows=%d older_than_days=%d", purged, days)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("api_log.purge_failed error=%r", exc)
        await asyncio.sleep(PURGE_EVERY)
