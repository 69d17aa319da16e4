"""`/api/v1/plans`: the five code-keyed routes over `store.plans`, and a plan's metadata."""

from __future__ import annotations

import uuid

from aiohttp import web

from meterflow.db import Conn
from resources import crud
from resources.metadata import Change, Metadata, metadata_routes
from store import code_keyed
from store.plans import PLANS

ROUTES = crud.code_keyed_routes(PLANS)


async def _change_metadata(
    conn: Conn, org: uuid.UUID, request: web.Request, change: Change
) -> Metadata | None:
    """A plan update naming only `metadata`: versioned and published like any other."""
    current = await crud.named(PLANS, conn, org, request, lock=True)
    metadata = change(dict(current["attributes"].get("metadata") or {}))
    body = await code_keyed.update(PLANS, conn, org, current, {"metadata": metadata})
    result: Metadata | None = body["metadata"]
    return result


metadata_routes(ROUTES, ("/api/v1/plans/{code}",), _change_metadata, publishes=True)
