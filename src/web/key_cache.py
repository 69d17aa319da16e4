"""The organizations of API keys a process checked, remembered for `key_cache_seconds`
(METERFLOW_INGEST_KEY_CACHE_SECONDS; 0 turns it off): one Postgres round trip per request
cost more than validating and producing a batch of events. An organization's change is seen
at once by the process that made it and within that time by the others. Refusals are never
remembered, so a new key works at once."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web.context import Organization


class KeyCache:
    """digest -> (organization, until when it may be used without asking Postgres)."""

    MAX_KEYS = 10_000

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._found: dict[bytes, tuple[Organization, float]] = {}

    def get(self, digest: bytes) -> Organization | None:
        found = self._found.get(digest)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, digest: bytes, org: Organization) -> None:
        if self.seconds <= 0:
            return
        if len(self._found) >= self.MAX_KEYS:
            self._found.clear()
        self._found[digest] = (org, time.monotonic() + self.seconds)

    def forget(self, organization_id: uuid.UUID) -> None:
        """The organization changed: ask Postgres again for any of its keys."""
        self._found = {d: v for d, v in self._found.items() if v[0].id != organization_id}
