"""API logs' SQL: one row per write request (`gateway.api_logging` writes them), read back by
`/api/v1/api_logs` with Lago's filters, purged after their retention."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg

from meterflow.db import Conn
from store.database import Body
from web.payload import iso


async def insert_log(conn: Conn, org: uuid.UUID, request_id: uuid.UUID, log: Body) -> None:
    await conn.execute(
        "INSERT INTO api_logs (request_id, organization_id, client, http_method, http_status, "
        "request_origin, request_path, request_body, request_response) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        request_id,
        org,
        log["client"],
        log["http_method"],
        log["http_status"],
        log["request_origin"],
        log["request_path"],
        log["request_body"],
        log["request_response"],
    )


async def purge(conn: Conn, days: int) -> int:
    """Delete the logs older than `days` days; how many."""
    status = await conn.execute(
        "DELETE FROM api_logs WHERE logged_at < now() - make_interval(days => $1)", days
    )
    return int(status.split()[-1])


def log_body(row: asyncpg.Record) -> Body:
    return {
        "request_id": str(row["request_id"]),
        "api_version": row["api_version"],
        "client": row["client"],
        "http_method": row["http_method"],
        "http_status": row["http_status"],
        "request_origin": row["request_origin"],
        "request_path": row["request_path"],
        "request_body": row["request_body"],
        "request_response": row["request_response"],
        "logged_at": iso(row["logged_at"]),
        "created_at": iso(row["logged_at"]),
    }


async def find_log(conn: Conn, org: uuid.UUID, request_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM api_logs WHERE organization_id = $1 AND request_id = $2", org, request_id
    )


_MATCHING = (
    "FROM api_logs WHERE organization_id = $1 "
    "AND ($2::date IS NULL OR logged_at >= $2::date) "
    "AND ($3::date IS NULL OR logged_at < $3::date) "
    "AND ($4::text[] IS NULL OR http_method = ANY($4::text[])) "
    "AND ($5::int[] IS NULL OR http_status = ANY($5::int[]) "
    "    OR ($6 AND http_status < 400) OR ($7 AND http_status >= 400)) "
    "AND ($8::text IS NULL OR api_version = $8) "
    "AND ($9::text IS NULL OR request_path LIKE $9 || '%') "
)


async def list_logs(
    conn: Conn, org: uuid.UUID, filters: dict[str, Any], limit: int, offset: int
) -> tuple[list[Body], int]:
    """A page of the organization's logs, newest first, and how many match. `filters`:
    from_date/to_date (days, UTC, inclusive), http_methods, http_statuses (numbers; with
    `succeeded`, below 400 too; with `failed`, 400 and above too), api_version,
    request_paths (a path prefix)."""
    to_date: date | None = filters["to_date"]
    args = (
        org,
        filters["from_date"],
        None if to_date is None else to_date + timedelta(days=1),
        filters["http_methods"],
        filters["http_statuses"],
        filters["succeeded"],
        filters["failed"],
        filters["api_version"],
        filters["request_paths"],
    )
    total = await conn.fetchval("SELECT count(*) " + _MATCHING, *args)
    rows = await conn.fetch(
        "SELECT * " + _MATCHING + "ORDER BY logged_at DESC, request_id LIMIT $10 OFFSET $11",
        *args,
        limit,
        offset,
    )
    return [log_body(r) for r in rows], total
