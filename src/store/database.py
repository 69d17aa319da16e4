"""The SQL plumbing every resource shares: the pool, name and code claims, pages, and the
INSERT and UPDATE of a row from its named columns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from meterflow import db
from meterflow.db import Conn
from web.errors import ValidationFailed

Lookup = Callable[[Conn, uuid.UUID, str], Awaitable[asyncpg.Record | None]]


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(dsn, schema=schema, size=size, init=db.use_orjson)


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


def values(columns: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
    """The values of `names`, in order, for `insert_row` or `update_row`."""
    return [columns[name] for name in names]
