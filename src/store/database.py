"""The SQL plumbing every resource shares: the pool, name and code claims, pages, and the
INSERT and UPDATE of a row from its named columns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from meterflow import db
from meterflow.db import Conn
from web.errors import ValidationFailed

Lookup = Callable[[Conn, uuid.UUID, str], Awaitable[asyncpg.Record | None]]
Body = dict[str, Any]


class LockingLookup(Protocol):
    def __call__(
        self, conn: Conn, org: uuid.UUID, code: str, /, *, lock: bool = False
    ) -> Awaitable[asyncpg.Record | None]: ...


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(dsn, schema=schema, size=size, init=db.use_orjson)


def code_lookup(table: str, *, live: bool) -> LockingLookup:
    """The organization's row of `table` with this `code` (`live`: not deleted), locked until
    the transaction ends when asked."""
    sql = f"SELECT * FROM {table} WHERE organization_id = $1 AND code = $2"
    sql += " AND deleted_at IS NULL" if live else ""

    async def lookup(
        conn: Conn, org: uuid.UUID, code: str, /, *, lock: bool = False
    ) -> asyncpg.Record | None:
        return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), org, code)

    return lookup


def id_lookup(table: str) -> Callable[[Conn, uuid.UUID], Awaitable[asyncpg.Record]]:
    """The row of `table` with this id, which the caller knows is there (deleted or not)."""
    sql = f"SELECT * FROM {table} WHERE id = $1"

    async def lookup(conn: Conn, row_id: uuid.UUID) -> asyncpg.Record:
        return await db.existing_row(conn, sql, row_id)

    return lookup


async def claim_name(conn: Conn, org: uuid.UUID, kind: str, name: str) -> None:
    """Serialise, until the transaction ends, every request creating or renaming a `kind`
    called `name` in this organization: check-then-insert cannot race into a duplicate."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{org}:{kind}:{name}"
    )


async def claim_code(conn: Conn, org: uuid.UUID, kind: str, code: str, lookup: Lookup) -> None:
    """Hold `code` for a new or renamed `kind` until the transaction ends, refused with
    `value_already_exist` when one of the organization's already has it."""
    await claim_name(conn, org, kind, code)
    if await lookup(conn, org, code) is not None:
        raise ValidationFailed({"code": ["value_already_exist"]})


async def claim_changed_code(
    conn: Conn, org: uuid.UUID, kind: str, current: asyncpg.Record, code: str, lookup: Lookup
) -> bool:
    """`claim_code` when an update renames the object; whether it did."""
    if code == current["code"]:
        return False
    await claim_code(conn, org, kind, code, lookup)
    return True


Row = asyncpg.Record


async def organization_page(
    conn: Conn, table: str, org: uuid.UUID, limit: int, offset: int, *, live: bool
) -> tuple[list[asyncpg.Record], int]:
    """A page of one organization's rows of `table`, newest first (`live`: not deleted)."""
    where = "WHERE organization_id = $1 " + ("AND deleted_at IS NULL " if live else "")
    return await db.fetch_page(
        conn,
        f"SELECT * FROM {table} ",
        where,
        (org,),
        order="created_at DESC, id",
        limit=limit,
        offset=offset,
    )


Lister = Callable[[Conn, uuid.UUID, int, int], Awaitable[tuple[list[asyncpg.Record], int]]]


def lister(table: str, *, live: bool) -> Lister:
    """`organization_page` of `table`, for a resource's list."""

    async def page(
        conn: Conn, org: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[asyncpg.Record], int]:
        return await organization_page(conn, table, org, limit, offset, live=live)

    return page


def insert_row(table: str, names: Sequence[str], *, returning: bool = False) -> str:
    """`INSERT INTO table (id, organization_id, names...) VALUES ($1, $2, ...)`."""
    given = ("id", "organization_id", *names)
    slots = ", ".join(f"${i}" for i in range(1, len(given) + 1))
    tail = " RETURNING *" if returning else ""
    return f"INSERT INTO {table} ({', '.join(given)}) VALUES ({slots}){tail}"


def update_row(
    table: str, names: Sequence[str], *, versioned: bool, returning: bool = False
) -> str:
    """`UPDATE table SET names... = $2..., updated_at = now() WHERE id = $1`; a `versioned`
    row (one the catalog topic carries) also gets its version bumped."""
    sets = [f"{name} = ${i}" for i, name in enumerate(names, 2)]
    sets += ["version = version + 1"] if versioned else []
    tail = " RETURNING *" if returning else ""
    return f"UPDATE {table} SET {', '.join([*sets, 'updated_at = now()'])} WHERE id = $1{tail}"


def payload_columns(
    payload: Mapping[str, Any], names: Sequence[str], kept: Sequence[str]
) -> dict[str, Any]:
    """The columns `names` of a row written from `payload`: each its field of that name (None
    when absent), but `attributes`, a JSON object of its fields `kept` (see `stored_payload`)."""
    columns = {name: payload.get(name) for name in names}
    columns["attributes"] = {name: payload.get(name) for name in kept}
    return columns


def stored_payload(row: asyncpg.Record | None, names: Sequence[str]) -> dict[str, Any] | None:
    """The payload a row was written from (None for no row): its columns `names`
    (`attributes` excepted) and the fields its `attributes` column keeps."""
    if row is None:
        return None
    return {**{name: row[name] for name in names if name != "attributes"}, **row["attributes"]}


def values(columns: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
    """The values of `names`, in order, for `insert_row` or `update_row`."""
    return [columns[name] for name in names]


async def insert_new(
    conn: Conn, table: str, org: uuid.UUID, names: Sequence[str], columns: Mapping[str, Any]
) -> uuid.UUID:
    """Insert a new row of `table` for an organization from its `names` columns; its id."""
    row_id = uuid.uuid4()
    await conn.execute(insert_row(table, names), row_id, org, *values(columns, names))
    return row_id


Inserter = Callable[[Conn, uuid.UUID, Mapping[str, Any]], Awaitable[asyncpg.Record]]
Updater = Callable[[Conn, asyncpg.Record, Mapping[str, Any]], Awaitable[asyncpg.Record]]


def inserter(table: str, names: Sequence[str]) -> Inserter:
    """Insert a new row of `table` for an organization from its `names` columns; returns it."""
    sql = insert_row(table, names, returning=True)

    async def insert(conn: Conn, org: uuid.UUID, columns: Mapping[str, Any]) -> asyncpg.Record:
        return await db.existing_row(conn, sql, uuid.uuid4(), org, *values(columns, names))

    return insert


def updater(table: str, names: Sequence[str], *, versioned: bool) -> Updater:
    """Write the `names` columns over a row of `table` (see `update_row`); returns it."""
    sql = update_row(table, names, versioned=versioned, returning=True)

    async def update(
        conn: Conn, current: asyncpg.Record, columns: Mapping[str, Any]
    ) -> asyncpg.Record:
        return await db.existing_row(conn, sql, current["id"], *values(columns, names))

    return update


async def soft_delete(conn: Conn, table: str, row_id: uuid.UUID, *, versioned: bool) -> None:
    """Mark a row of `table` deleted (readers skip it; invoices that name it keep it); a
    `versioned` row also gets its version bumped, so its catalog record says so."""
    bump = "version = version + 1, " if versioned else ""
    await conn.execute(
        f"UPDATE {table} SET deleted_at = now(), {bump}updated_at = now() WHERE id = $1", row_id
    )


Filters = Mapping[str, Any]
# A list as the API answers it: (conn, owner, filters, limit, offset) -> (bodies, total);
# filters are most often `Filters`, a few lists take a tuple of their own.
Pager = Callable[[Conn, Any, Any, int, int], Awaitable[tuple[list[Body], int]]]
# The API bodies of many rows at once.
Render = Callable[[Conn, list[asyncpg.Record]], Awaitable[list[Body]]]


def each(body: Callable[[asyncpg.Record], Body]) -> Render:
    """`Render` for a resource whose body needs nothing but its row."""

    async def render(conn: Conn, rows: list[asyncpg.Record]) -> list[Body]:
        return [body(r) for r in rows]

    return render


@dataclass(frozen=True)
class Listing:
    """How a list reads its rows: `select` (up to its WHERE, joins included), `owner` (the
    condition naming whose rows they are, `{}` where its value goes), the `filters` a caller
    may set, by name (SQL with `{}` for the value; a filter left None is not applied), and
    the `order`, newest first."""

    select: str
    owner: str
    filters: Mapping[str, str]
    order: str


async def listed(
    listing: Listing, conn: Conn, owner: Any, filters: Filters, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of the rows `listing` reads for `owner`, and how many match in all."""
    args = [owner]
    where = [listing.owner.replace("{}", "$1")]
    for name, condition in listing.filters.items():
        if filters.get(name) is not None:
            args.append(filters[name])
            where.append(condition.replace("{}", f"${len(args)}"))
    return await db.fetch_page(
        conn,
        listing.select,
        "WHERE " + " AND ".join(where) + " ",
        args,
        order=listing.order,
        limit=limit,
        offset=offset,
    )


def pager(
    listing: Listing,
    render: Render,
    *,
    check: Callable[[Conn, Any, Filters], Awaitable[None]] | None = None,
) -> Pager:
    """The list `listing` reads, as the API answers it: a page of bodies and how many match.
    `check` refuses filters that name what does not exist (a customer), before any read."""

    async def page(
        conn: Conn, owner: Any, filters: Filters, limit: int, offset: int
    ) -> tuple[list[Body], int]:
        if check is not None:
            await check(conn, owner, filters)
        rows, total = await listed(listing, conn, owner, filters, limit, offset)
        return await render(conn, rows), total

    return page


async def terminate_active(conn: Conn, table: str, column: str, value: uuid.UUID) -> None:
    """Terminate, now, the active rows of `table` (applied coupons, wallets) whose `column`
    is `value`: later invoices no longer use them."""
    await conn.execute(
        f"UPDATE {table} SET status = 'terminated', terminated_at = now(), updated_at = now() "
        f"WHERE {column} = $1 AND status = 'active'",
        value,
    )
