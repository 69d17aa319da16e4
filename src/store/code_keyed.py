"""The steps of a resource the API keys by its `code` (coupons, taxes, add-ons, billable
metrics, plans), written once: parse the input, claim the code, write the row, answer bodies."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

import asyncpg

from meterflow.db import Conn
from store import database
from store.database import Body, LockingLookup, Render

Row = asyncpg.Record


@dataclass(frozen=True)
class CodeKeyed:
    """What one code-keyed resource does in the database. `parse` checks an input against
    the current row (None when creating) and returns its columns, raising ValidationFailed;
    `attach` writes what hangs off the row (its taxes, its charges) after an insert or an
    update; `delete` returns the row to answer with; `render` makes the bodies of many rows at
    once; `changed` (resources on the catalog topic) runs after a create (before: None) or an
    update, in the same transaction. The rows live in the table `plural`, written from their
    `columns` (versioned when the resource publishes) and listed newest first (`live`: the
    ones not deleted)."""

    kind: str
    plural: str
    lookup: LockingLookup
    parse: Callable[[Conn, uuid.UUID, Body, Row | None], Awaitable[Body]]
    columns: tuple[str, ...]
    delete: Callable[[Conn, Row], Awaitable[Row]]
    render: Render
    attach: Callable[[Conn, uuid.UUID, Row, Body], Awaitable[None]] | None = None
    changed: Callable[[Conn, Row | None, Row], Awaitable[None]] | None = None
    live: bool = True

    @property
    def publishes(self) -> bool:
        return self.changed is not None

    @cached_property
    def insert(self) -> database.Inserter:
        return database.inserter(self.plural, self.columns)

    @cached_property
    def update(self) -> database.Updater:
        return database.updater(self.plural, self.columns, versioned=self.publishes)

    @cached_property
    def listing(self) -> database.Lister:
        return database.lister(self.plural, live=self.live)


async def answer(spec: CodeKeyed, conn: Conn, row: Row) -> Body:
    return (await spec.render(conn, [row]))[0]


async def _written(
    spec: CodeKeyed, conn: Conn, org: uuid.UUID, before: Row | None, row: Row, columns: Body
) -> Body:
    if spec.attach is not None:
        await spec.attach(conn, org, row, columns)
    if spec.changed is not None:
        await spec.changed(conn, before, row)
    return await answer(spec, conn, row)


async def create(spec: CodeKeyed, conn: Conn, org: uuid.UUID, raw: Body) -> Body:
    columns = await spec.parse(conn, org, raw, None)
    await database.claim_code(conn, org, spec.kind, columns["code"], spec.lookup)
    return await _written(spec, conn, org, None, await spec.insert(conn, org, columns), columns)


async def update(spec: CodeKeyed, conn: Conn, org: uuid.UUID, current: Row, raw: Body) -> Body:
    columns = await spec.parse(conn, org, raw, current)
    await database.claim_changed_code(conn, org, spec.kind, current, columns["code"], spec.lookup)
    row = await spec.update(conn, current, columns)
    return await _written(spec, conn, org, current, row, columns)


async def delete(spec: CodeKeyed, conn: Conn, current: Row) -> Body:
    return await answer(spec, conn, await spec.delete(conn, current))


async def page(
    spec: CodeKeyed, conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[Body], int]:
    """A page of the organization's objects as bodies, newest first, and how many there are."""
    rows, total = await spec.listing(conn, org, limit, offset)
    return await spec.render(conn, rows), total
