"""Postgres connections and the schema migrations, plain SQL files applied in order once."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

# A plain connection, or one lent by the pool: every query function takes either.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Any constant works; it only has to be the same for every process applying migrations.
_MIGRATION_LOCK = 0x6D65746572


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped with meterflow, in the order to apply them."""
    folder = resources.files("meterflow") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name, f.read_text()) for f in files]


async def connect(dsn: str, *, schema: str = "public") -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def use_orjson(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Connection init: json and jsonb values travel as Python objects through orjson."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """A pool's connection goes back without asyncpg's default reset query (advisory locks
    released, cursors closed, UNLISTEN, RESET ALL: one more round trip per checkout, a tenth
    of the ingest process's time on a current-usage request). asyncpg still rolls back an
    open transaction. So no code on a pooled connection changes session state: SET LOCAL,
    transaction-level advisory locks, no LISTEN."""


async def create_pool(
    dsn: str,
    *,
    schema: str = "public",
    size: int = 10,
    settings: Mapping[str, str] | None = None,
    **options: Any,
) -> asyncpg.Pool:
    """A pool whose connections use `schema` (and the session `settings` given), released
    without a reset query (`_keep_session`); `options` go to asyncpg (init, timeouts...)."""
    server_settings = {"search_path": schema, **(settings or {})}
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        server_settings=server_settings,
        reset=_keep_session,
        **options,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """One connection in one transaction: everything a request writes commits together."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def json_recordset(columns: Sequence[tuple[str, str]], parameter: int, alias: str) -> str:
    """`json_to_recordset($parameter) AS alias(name type, ...)`: the rows of a JSON list of
    objects sent as text, one key per column (one encoder call instead of an array a column)."""
    names = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"json_to_recordset(${parameter}::text::json) AS {alias}({names})"


# Each byte with a version 7 UUID's version nibble, and with its RFC 9562 variant bits.
_VERSION_7 = bytes(0x70 | (b & 0x0F) for b in range(256))
_VARIANT = bytes(0x80 | (b & 0x3F) for b in range(256))
_LOW_62_BITS = (1 << 62) - 1


def new_ids(n: int) -> list[str]:
    """`n` new ids for rows written together, as 32 hex digits (which Postgres's uuid type
    reads), in increasing order: time-ordered UUIDs (version 7: the current millisecond,
    then 74 random bits), so a primary key index takes a statement's rows at its right
    edge instead of at random pages. One read of the OS's random source for all of them:
    about 0.2 us an id against 2 us for `str(uuid.uuid4())`."""
    raw = bytearray(os.urandom(16 * n))
    millisecond = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    for i, byte in enumerate(millisecond):
        raw[i::16] = bytes((byte,)) * n
    raw[6::16] = raw[6::16].translate(_VERSION_7)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex()
    return sorted(digits[k : k + 32] for k in range(0, 32 * n, 32))


def new_id() -> uuid.UUID:
    """One id as `new_ids` draws them."""
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits: 74 used
    millisecond = time.time_ns() // 1_000_000
    version_and_rand_a = 0x7 << 76 | (random >> 62 & 0xFFF) << 64
    variant_and_rand_b = 0x2 << 62 | random & _LOW_62_BITS
    return uuid.UUID(int=millisecond << 80 | version_and_rand_a | variant_and_rand_b)


async def existing_row(conn: Conn, sql: str, *args: Any) -> asyncpg.Record:
    """The one row `sql` reads (or writes, `RETURNING *`), which the caller knows is there
    (its id was just read)."""
    row = await conn.fetchrow(sql, *args)
    assert row is not None
    return row


async def fetch_page(
    conn: Conn,
    select: str,
    where: str,
    args: Sequence[Any],
    *,
    order: str,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """One page of `select + where` in `order`, and how many rows match in all. `select` is
    `SELECT ... FROM ... ` (joins included); the count runs over its FROM clause."""
    count_from = select[select.index(" FROM ") + 1 :]
    total = await conn.fetchval(f"SELECT count(*) {count_from}{where}", *args)
    n = len(args)
    rows = await conn.fetch(
        f"{select}{where}ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset
    )
    return list(rows), int(total)


async def migrate(dsn: str, *, schema: str = "public") -> list[str]:
    """Create `schema` if needed and apply the migrations it lacks; returns those applied.

    Safe to run from several processes at once: an advisory lock serialises them and each
    migration commits together with its record in `schema_migrations`.
    """
    conn = await connect(dsn, schema=schema)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            applied = []
            for name, sql in migration_files():
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                log.info("db.migrated schema=%s migration=%s", schema, name)
                applied.append(name)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
