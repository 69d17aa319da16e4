"""`/api/v1/add_ons`: the five code-keyed routes over `store.add_ons`."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store.add_ons import ADD_ONS


def routes() -> list[web.RouteDef]:
    return crud.code_keyed_routes(ADD_ONS)
