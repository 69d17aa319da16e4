"""Asking the aggregator's workers for a subscription's current usage over HTTP: the client
that ingest (the Lago API and the console), the webhooks service's alert monitor and
`meterflow replay` share.

METERFLOW_AGGREGATOR_URL names one worker or several, separated by commas. Any worker
answers for every subscription: it routes the request to the worker that owns the
subscription's partition. The client asks the worker that answered last first, and the
next ones in turn when one cannot be reached or answers 503 (not ready, or the owner it
forwards to is down): so a worker of several may be down without current usage going down
with it for the subscriptions the others own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from meterflow.errors import ConfigurationError
from meterflow.settings import env_int

log = logging.getLogger(__name__)

# The first worker's web view (`METERFLOW_AGGREGATOR_PORT`); worker i listens on it + i.
DEFAULT_PORT = 6066


def aggregator_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    """The workers METERFLOW_AGGREGATOR_URL names; unset: those `meterflow aggregator` runs
    on this machine (METERFLOW_AGGREGATOR_PORT and the METERFLOW_AGGREGATOR_WORKERS - 1
    ports after it)."""
    raw = env.get("METERFLOW_AGGREGATOR_URL") or ""
    urls = tuple(url.strip().rstrip("/") for url in raw.split(",") if url.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"METERFLOW_AGGREGATOR_URL: {url!r} is not an http:// or https:// URL; "
                "name each aggregator worker's web view (for example "
                "http://127.0.0.1:6066), several separated by commas"
            )
    if urls:
        return urls
    port = env_int(env, "METERFLOW_AGGREGATOR_PORT", DEFAULT_PORT, minimum=1)
    workers = env_int(env, "METERFLOW_AGGREGATOR_WORKERS", 1, minimum=1)
    return tuple(f"http://127.0.0.1:{port + i}" for i in range(workers))


class Unreachable(Exception):
    """No worker could be asked: each refused the connection, failed or timed out."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A worker's answer: its status and body (Lago's JSON), and which worker gave it."""

    status: int
    body: bytes
    url: str


class UsageClient:
    """Current usage from the first of `urls` that can answer (see the module's doc)."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._first = 0  # the worker that answered last

    async def get(
        self, http: aiohttp.ClientSession, external_subscription_id: str, organization_id: str
    ) -> Answer:
        """The usage answer of the first worker that answers other than 503 (or the last
        503 when none does); Unreachable when none could be asked at all."""
        params = {"organization_id": organization_id}
        unavailable: Answer | None = None
        for step in range(len(self.urls)):
            index = (self._first + step) % len(self.urls)
            url = f"{self.urls[index]}/current-usage/{external_subscription_id}"
            try:
                async with http.get(url, params=params) as response:
                    answer = Answer(response.status, await response.read(), url)
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.warning("usage.aggregator_unreachable url=%s error=%r", url, exc)
                continue
            if answer.status != 503:
                self._first = index
                return answer
            unavailable = answer
        if unavailable is not None:
            return unavailable
        raise Unreachable(f"no aggregator worker answered at {', '.join(self.urls)}")
