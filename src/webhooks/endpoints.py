"""`/api/v1/webhook_endpoints` (create, list, find, update, delete) and
`/api/v1/webhooks/json_public_key` (the key that checks `jwt` signatures)."""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from meterflow.db import Conn
from meterflow.webhook_outbox import WEBHOOK_TYPES
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, Fields, iso, ok, page_params, pagination_meta, read_wrapped
from webhooks.signing import signing_keys

ROUTES = web.RouteTableDef()

_FIELDS = {"webhook_url", "signature_algo", "name", "event_types"}
ALGORITHMS = ("hmac", "jwt")


def endpoint_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "lago_id": str(row["id"]),
        "lago_organization_id": str(row["organization_id"]),
        "webhook_url": row["webhook_url"],
        "signature_algo": row["signature_algo"],
        "name": row["name"],
        "event_types": row["event_types"],
        "created_at": iso(row["created_at"]),
    }


def _parse(raw: dict[str, Any]) -> tuple[Any, ...]:
    """The columns of an endpoint input (webhook_url, signature_algo, name, event_types, the
    order both writes take them in); raises ValidationFailed naming each bad field."""
    fields = Fields(raw, _FIELDS)
    url = fields.text("webhook_url", required=True, max_length=2048)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            fields.add("webhook_url", "url_is_invalid")
    algo = fields.text("signature_algo", choices=ALGORITHMS) or "hmac"
    event_types = fields.strings("event_types")
    if event_types is not None and any(t not in WEBHOOK_TYPES for t in event_types):
        fields.add("event_types", INVALID)
    name = fields.text("name")
    fields.check()
    return url, algo, name, None if event_types is None else sorted(set(event_types))


async def _endpoint(conn: Conn, org: uuid.UUID, raw_id: str) -> asyncpg.Record:
    try:
        endpoint_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound("webhook_endpoint") from None
    row = await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE id = $1 AND organization_id = $2",
        endpoint_id,
        org,
    )
    if row is None:
        raise NotFound("webhook_endpoint")
    return row


async def _write(conn: Conn, sql: str, *args: Any) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError:
        raise ValidationFailed({"webhook_url": ["value_already_exist"]}) from None
    assert row is not None
    return row


@ROUTES.post("/api/v1/webhook_endpoints")
async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    columns = _parse(await read_wrapped(request, "webhook_endpoint"))
    async with ctx.db.acquire() as conn:
        row = await _write(
            conn,
            "INSERT INTO webhook_endpoints (id, organization_id, webhook_url, signature_algo, "
            "name, event_types) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            uuid.uuid4(),
            org.id,
            *columns,
        )
    return ok({"webhook_endpoint": endpoint_body(row)})


@ROUTES.put("/api/v1/webhook_endpoints/{lago_id}")
async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    columns = _parse(await read_wrapped(request, "webhook_endpoint"))
    async with ctx.db.acquire() as conn:
        existing = await _endpoint(conn, org.id, request.match_info["lago_id"])
        row = await _write(
            conn,
            "UPDATE webhook_endpoints SET webhook_url = $2, signature_algo = $3, name = $4, "
            "event_types = $5, updated_at = now() WHERE id = $1 RETURNING *",
            existing["id"],
            *columns,
        )
    return ok({"webhook_endpoint": endpoint_body(row)})


@ROUTES.get("/api/v1/webhook_endpoints/{lago_id}")
async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await _endpoint(conn, org.id, request.match_info["lago_id"])
    return ok({"webhook_endpoint": endpoint_body(row)})


@ROUTES.get("/api/v1/webhook_endpoints")
async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        total = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE organization_id = $1", org.id
        )
        rows = await conn.fetch(
            "SELECT * FROM webhook_endpoints WHERE organization_id = $1 "
            "ORDER BY created_at, id LIMIT $2 OFFSET $3",
            org.id,
            per_page,
            (page - 1) * per_page,
        )
    return ok(
        {
            "webhook_endpoints": [endpoint_body(r) for r in rows],
            "meta": pagination_meta(page, per_page, int(total)),
        }
    )


@ROUTES.delete("/api/v1/webhook_endpoints/{lago_id}")
async def destroy(request: web.Request) -> web.Response:
    """Delete the endpoint; the webhooks still queued for it go with it."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await _endpoint(conn, org.id, request.match_info["lago_id"])
        await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", row["id"])
    return ok({"webhook_endpoint": endpoint_body(row)})


@ROUTES.get("/api/v1/webhooks/json_public_key")
async def public_key(request: web.Request) -> web.Response:
    """The organization's RSA public key (PEM, base64-encoded, as Lago serves it)."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        keys = await signing_keys(conn, org.id)
    encoded = base64.b64encode(keys.public_key_pem()).decode()
    return ok({"webhook": {"public_key": encoded}})


@ROUTES.get("/api/v1/webhooks/public_key")
async def public_key_text(request: web.Request) -> web.Response:
    """The deprecated plain-text form of `json_public_key`."""
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        keys = await signing_keys(conn, org.id)
    return web.Response(text=base64.b64encode(keys.public_key_pem()).decode())
