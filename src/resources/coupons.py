"""`/api/v1/coupons`: the five code-keyed routes over `store.coupons`."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store.coupons import COUPONS


def routes() -> list[web.RouteDef]:
    return crud.code_keyed_routes(COUPONS)
