"""API keys: issued once, stored as SHA-256 digests, each naming one organization (checked
keys are remembered for a while, see `web.key_cache`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import asyncpg
from aiohttp import web

from web.context import Organization, context
from web.errors import Unauthorized

_PREFIX = "Bearer "


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def organization_by_key(
    pool: asyncpg.Pool, key_digest: bytes
) -> tuple[Organization, bytes] | None:
    row = await pool.fetchrow(
        "SELECT o.id, o.name, o.timezone, k.key_digest FROM api_keys k "
        "JOIN organizations o ON o.id = k.organization_id WHERE k.key_digest = $1",
        key_digest,
    )
    if row is None:
        return None
    return Organization(row["id"], row["name"], row["timezone"]), bytes(row["key_digest"])


async def authenticate(request: web.Request) -> Organization:
    """The organization whose key the request carries, or Unauthorized."""
    header = request.headers.get("Authorization", "")
    if not header.startswith(_PREFIX) or not header[len(_PREFIX) :].strip():
        raise Unauthorized()
    digest = key_digest(header[len(_PREFIX) :].strip())
    ctx = context(request)
    known = ctx.keys.get(digest)
    if known is not None:
        return known
    found = await organization_by_key(ctx.db, digest)
    # The lookup is by digest (an index probe, not a comparison of secrets); the final
    # check is constant-time anyway so no code path compares a key byte by byte.
    if found is None or not hmac.compare_digest(found[1], digest):
        raise Unauthorized()
    ctx.keys.put(digest, found[0])
    return found[0]
