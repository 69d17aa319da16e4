"""The handler steps resources share: run a step on the object a path's `lago_id` names, and
the five routes of a resource keyed by its code (`store.code_keyed`), written once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from meterflow import db
from meterflow.db import Conn
from store import code_keyed
from store.code_keyed import CodeKeyed
from store.database import Body, Filters, Pager
from web.context import IngestContext, Organization, context, organization
from web.errors import NotFound
from web.payload import ok, page_params, pagination_meta, read_wrapped

Step = Callable[[Conn, uuid.UUID], Awaitable[Body]]
T = TypeVar("T")
OwnedStep = Callable[[Conn, uuid.UUID, str], Awaitable[Body | None]]


async def run(
    request: web.Request, step: Callable[[Conn, uuid.UUID], Awaitable[T]], *, write: bool
) -> T:
    """`step` with the organization's id: in one transaction when it `write`s."""
    ctx, org = context(request), organization(request)
    if not write:
        async with ctx.db.acquire() as conn:
            return await step(conn, org.id)
    async with db.unit_of_work(ctx.db) as conn:
        return await step(conn, org.id)


async def answer(
    request: web.Request,
    kind: str,
    step: Callable[[Conn, uuid.UUID], Awaitable[Any]],
    *,
    write: bool = True,
    publishes: bool = False,
) -> web.Response:
    """Run `step` (in one transaction when it `write`s) and answer `{kind: body}`; when it
    `publishes`, the catalog changes it queued go to Kafka first."""
    body = await run(request, step, write=write)
    if publishes:
        await context(request).catalog.drain_quietly()
    return ok({kind: body})


Create = Callable[[IngestContext, Organization, dict[str, Any]], Awaitable[Body]]


async def created(request: web.Request, kind: str, create: Create) -> web.Response:
    """`POST` one object: the body's `{kind: {...}}` handed to `create`, `{kind: body}` back."""
    raw = await read_wrapped(request, kind)
    return ok({kind: await create(context(request), organization(request), raw)})


async def by_lago_id(
    request: web.Request, kind: str, step: OwnedStep, *, write: bool = True
) -> web.Response:
    """Run `step` on the object the path's `lago_id` names and answer `{kind: body}`."""
    lago_id = request.match_info["lago_id"]
    return await answer(request, kind, lambda conn, org: step(conn, org, lago_id), write=write)


def listed_customer(request: web.Request) -> str | None:
    """The customer a list is narrowed to: the path's `external_customer_id` (on a
    customer's own list), else the query's, else none."""
    path_or_query = request.match_info.get("external_customer_id")
    return path_or_query or request.query.get("external_customer_id") or None


async def answer_page(
    request: web.Request, key: str, pager: Pager, filters: Any, *, owner: Any = None
) -> web.Response:
    """`GET` a list: the page the query asks for, of `owner`'s objects (by default the
    organization's) kept by `filters`, as `{key: [...], meta}`."""
    page, per_page = page_params(request)

    async def step(conn: Conn, org: uuid.UUID) -> tuple[list[Body], int]:
        whose = org if owner is None else owner
        return await pager(conn, whose, filters, per_page, (page - 1) * per_page)

    bodies, total = await run(request, step, write=False)
    return ok({key: bodies, "meta": pagination_meta(page, per_page, total)})


async def named(
    spec: CodeKeyed, conn: Conn, org: uuid.UUID, request: web.Request, *, lock: bool
) -> asyncpg.Record:
    """The object the path's `code` names (`{kind}_not_found` when none has it)."""
    row = await spec.lookup(conn, org, request.match_info["code"], lock=lock)
    if row is None:
        raise NotFound(spec.kind)
    return row


def code_keyed_routes(spec: CodeKeyed) -> web.RouteTableDef:
    """`POST`, `GET` (a page) on `/api/v1/{plural}`, and `GET`, `PUT`, `DELETE` on
    `/api/v1/{plural}/{code}` (`{kind}_not_found` when no object has that code)."""
    routes = web.RouteTableDef()
    path = f"/api/v1/{spec.plural}"

    async def written(request: web.Request, step: Step) -> web.Response:
        return await answer(request, spec.kind, step, publishes=spec.publishes)

    @routes.post(path)
    async def create(request: web.Request) -> web.Response:
        raw = await read_wrapped(request, spec.kind)
        return await written(request, lambda c, o: code_keyed.create(spec, c, o, raw))

    @routes.put(path + "/{code}")
    async def update(request: web.Request) -> web.Response:
        raw = await read_wrapped(request, spec.kind)

        async def step(conn: Conn, org: uuid.UUID) -> Body:
            current = await named(spec, conn, org, request, lock=True)
            return await code_keyed.update(spec, conn, org, current, raw)

        return await written(request, step)

    @routes.delete(path + "/{code}")
    async def destroy(request: web.Request) -> web.Response:
        async def step(conn: Conn, org: uuid.UUID) -> Body:
            return await code_keyed.delete(
                spec, conn, await named(spec, conn, org, request, lock=True)
            )

        return await written(request, step)

    @routes.get(path + "/{code}")
    async def find(request: web.Request) -> web.Response:
        async def step(conn: Conn, org: uuid.UUID) -> Body:
            return await code_keyed.answer(
                spec, conn, await named(spec, conn, org, request, lock=False)
            )

        return await answer(request, spec.kind, step, write=False)

    @routes.get(path)
    async def find_all(request: web.Request) -> web.Response:
        return await answer_page(request, spec.plural, pager, {})

    async def pager(
        conn: Conn, org: uuid.UUID, filters: Filters, limit: int, offset: int
    ) -> tuple[list[Body], int]:
        return await code_keyed.page(spec, conn, org, limit, offset)

    return routes
