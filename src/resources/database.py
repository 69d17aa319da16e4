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
