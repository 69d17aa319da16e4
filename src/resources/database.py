"""The SQL plumbing every resource shares: the pool, name claims and pages."""

from __future__ import annotations

import uuid

import asyncpg

from meterflow import db
from meterflow.db import Conn


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(dsn, schema=schema, size=size, init=db.use_orjson)


async def claim_name(conn: Conn, org: uuid.UUID, kind: str, name: str) -> None:
    """Serialise, until the transaction ends, every request creating or renaming a `kind`
    called `name` in this organization: check-then-insert cannot race into a duplicate."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{org}:{kind}:{name}"
    )


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
