"""The record format of the compacted catalog topic, shared by its writer (ingest) and its
reader (the aggregator).

Every change to a catalog object in Postgres is published as one record:

- key: ``"<kind>:<lago_id>"`` (UTF-8), so compaction keeps the latest version per object;
- value: JSON ``{"kind", "lago_id", "organization_id", "version", "body"}`` where ``body``
  is the object exactly as the Lago-compatible API returns it (without the wrapper), and
  ``version`` increases with every change of that object (readers ignore older versions);
- a deleted object is a record whose ``body`` is null (not a Kafka tombstone, so that
  readers learn of the deletion before compaction removes it);
- headers: a subscription's record names its ``organization_id`` and ``external_id``
  (UTF-8), so that an aggregator worker skips, undecoded, the subscriptions of partitions
  it does not own (`subscription_of`); records written before these headers have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import msgspec
import orjson


class CatalogKind(StrEnum):
    ORGANIZATION = "organization"
    CUSTOMER = "customer"
    BILLABLE_METRIC = "billable_metric"
    PLAN = "plan"
    SUBSCRIPTION = "subscription"


_ORGANIZATION, _EXTERNAL_ID = "organization_id", "external_id"


def subscription_of(headers: Sequence[tuple[str, bytes]]) -> tuple[str, str] | None:
    """(organization_id, external_id) named by a subscription record's headers, or None (a
    record of another kind, or written without them)."""
    if len(headers) != 2 or headers[0][0] != _ORGANIZATION or headers[1][0] != _EXTERNAL_ID:
        return None
    return headers[0][1].decode(), headers[1][1].decode()


class CatalogRecord(msgspec.Struct, frozen=True):
    """One catalog record (a msgspec Struct: decoded from the topic in one C pass, and
    built in 0.06 us where a frozen dataclass took 0.6: a restarted worker reads a record
    per subscription)."""

    kind: CatalogKind
    lago_id: str
    organization_id: str
    version: int
    body: dict[str, Any] | None

    @property
    def key(self) -> bytes:
        return f"{self.kind}:{self.lago_id}".encode()

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The subscription's organization and external id (see the module docstring)."""
        external_id = None if self.body is None else self.body.get("external_id")
        if self.kind is not CatalogKind.SUBSCRIPTION or not isinstance(external_id, str):
            return []
        return [
            (_ORGANIZATION, self.organization_id.encode()),
            (_EXTERNAL_ID, external_id.encode()),
        ]

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "kind": self.kind.value,
                "lago_id": self.lago_id,
                "organization_id": self.organization_id,
                "version": self.version,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> CatalogRecord:
        """A record read from the topic; msgspec's ValidationError (a ValueError) naming the
        field for an unknown kind, a missing field or one of another type."""
        return _DECODER.decode(value)


_DECODER = msgspec.json.Decoder(CatalogRecord)
