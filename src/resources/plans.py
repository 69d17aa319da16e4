"""`/api/v1/plans`: the five code-keyed routes over `store.plans`."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store.plans import PLANS


def routes() -> list[web.RouteDef]:
    return crud.code_keyed_routes(PLANS)
