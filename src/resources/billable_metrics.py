"""`/api/v1/billable_metrics`: the five code-keyed routes over `store.billable_metrics`."""

from __future__ import annotations

from aiohttp import web

from resources import crud
from store.billable_metrics import BILLABLE_METRICS


def routes() -> list[web.RouteDef]:
    return crud.code_keyed_routes(BILLABLE_METRICS)
