"""`/api/v1/taxes`: the five code-keyed routes over `store.taxes`."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store.taxes import TAXES


def routes() -> list[web.RouteDef]:
    return crud.code_keyed_routes(TAXES)
