"""The route table of every Lago resource, for the gateway to mount."""

from __future__ import annotations

from aiohttp import web

from resources import (
    billable_metrics,
    coupons,
    current_usage,
    customers,
    invoices,
    organizations,
    plans,
    subscriptions,
    taxes,
    wallets,
)

_RESOURCES = (
    customers,
    billable_metrics,
    plans,
    subscriptions,
    invoices,
    current_usage,
    taxes,
    coupons,
    wallets,
    organizations,
)


def routes() -> list[web.RouteDef]:
    return [route for resource in _RESOURCES for route in resource.routes()]
