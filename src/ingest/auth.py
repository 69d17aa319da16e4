"""API keys: issued once, stored as SHA-256 digests, each naming one organization (checked
keys are remembered for a while, see `ingest.key_cache`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from ingest import repository
from ingest.context import context
from ingest.errors import Unauthorized
from ingest.repository import Organization

_PREFIX = "Bearer "


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


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
    found = await repository.organization_by_key(ctx.db, digest)
    # The lookup is by digest (an index probe, not a comparison of secrets); the final
    # check is constant-time anyway so no code path compares a key byte by byte.
    if found is None or not hmac.compare_digest(found[1], digest):
        raise Unauthorized()
    ctx.keys.put(digest, found[0])
    return found[0]
