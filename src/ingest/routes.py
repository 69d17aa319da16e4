"""The route table of the event intake, for the gateway to mount."""

from __future__ import annotations

from aiohttp import web

from ingest import event_debugger, events


def routes() -> list[web.AbstractRouteDef]:
    return [*events.ROUTES, *event_debugger.ROUTES]
