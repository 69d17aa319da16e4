"""A local webhook receiver for tests: it checks nothing itself, records every request
(unique key, algorithm, signature, body), answers 500 to the first `fail_first` requests
of each unique key, and counts the 2xx it gave per key."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    unique_key: str
    algorithm: str
    signature: str
    body: bytes

    @property
    def payload(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class WebhookReceiver:
    fail_first: int = 0
    # While set, every request waits until it is cleared, then gets a 503.
    hold: asyncio.Event | None = None
    requests: list[Received] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.headers.get("X-Lago-Unique-Key", ""),
            request.headers.get("X-Lago-Signature-Algorithm", ""),
            request.headers.get("X-Lago-Signature", ""),
            await request.read(),
        )
        self.requests.append(received)
        if self.hold is not None and not self.hold.is_set():
            await self.hold.wait()
            return web.Response(status=503)
        tries = sum(1 for r in self.requests if r.unique_key == received.unique_key)
        if tries <= self.fail_first:
            return web.Response(status=500, text="not yet")
        self.accepted[received.unique_key] += 1
        return web.Response(text="ok")

    def delivered(self) -> dict[str, Received]:
        """The accepted request of each unique key (the last one received for that key)."""
        return {r.unique_key: r for r in self.requests if r.unique_key in self.accepted}

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        assert self._runner is not None
        await self._runner.cleanup()
