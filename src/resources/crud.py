"""The handler steps most Lago resources take the same way: lock the object the path names,
answer one object found by its code, answer a page of the organization's objects."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from aiohttp import web

from meterflow.db import Conn
from web.context import context, organization
from web.errors import NotFound
from web.payload import ok, page_params, pagination_meta

Lookup = Callable[[Conn, uuid.UUID, str], Awaitable[asyncpg.Record | None]]
Lister = Callable[[Conn, uuid.UUID, int, int], Awaitable[tuple[list[asyncpg.Record], int]]]
Body = Callable[[asyncpg.Record], dict[str, Any]]


class LockingLookup(Protocol):
    def __call__(
        self, conn: Conn, org: uuid.UUID, code: str, /, *, lock: bool = False
    ) -> Awaitable[asyncpg.Record | None]: ...


async def locked_by_code(
    conn: Conn, request: web.Request, kind: str, lookup: LockingLookup
) -> asyncpg.Record:
    """The object the path's `code` names, locked until the transaction ends, or
    `{kind}_not_found`."""
    row = await lookup(conn, organization(request).id, request.match_info["code"], lock=True)
    if row is None:
        raise NotFound(kind)
    return row


async def find_by_code(request: web.Request, kind: str, lookup: Lookup, body: Body) -> web.Response:
    """`GET .../{code}`: the object as `{kind: body}`, or `{kind}_not_found`."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await lookup(conn, org.id, request.match_info["code"])
    if row is None:
        raise NotFound(kind)
    return ok({kind: body(row)})


async def find_page(request: web.Request, key: str, lister: Lister, body: Body) -> web.Response:
    """`GET ...`: a page of the organization's objects as `{key: [...], meta}`."""
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        rows, total = await lister(conn, org.id, per_page, (page - 1) * per_page)
    return ok({key: [body(r) for r in rows], "meta": pagination_meta(page, per_page, total)})
