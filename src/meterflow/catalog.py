"""The record format of the compacted catalog topic, shared by its writer (ingest) and its
reader (the aggregator).

Every change to a catalog object in Postgres is published as one record:

- key: ``"<kind>:<lago_id>"`` (UTF-8), so compaction keeps the latest version per object;
- value: JSON ``{"kind", "lago_id", "organization_id", "version", "body"}`` where ``body``
  is the object exactly as the Lago-compatible API returns it (without the wrapper), and
  ``version`` increases with every change of that object (readers ignore older versions);
- a deleted object is a record whose ``body`` is null (not a Kafka tombstone, so that
  readers learn of the deletion before compaction removes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class CatalogKind(StrEnum):
    ORGANIZATION = "organization"
    CUSTOMER = "customer"
    BILLABLE_METRIC = "billable_metric"
    PLAN = "plan"
    SUBSCRIPTION = "subscription"


# The kinds by value: a dict lookup, where `CatalogKind(value)` (Enum's __call__) was a third
# of decoding a record while a restarted worker reads its catalog (issue 15).
_KINDS = {kind.value: kind for kind in CatalogKind}


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    kind: CatalogKind
    lago_id: str
    organization_id: str
    version: int
    body: dict[str, Any] | None

    @property
    def key(self) -> bytes:
        return f"{self.kind}:{self.lago_id}".encode()

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
        """A record read from the topic; KeyError for an unknown kind or a missing field."""
        raw = orjson.loads(value)
        return cls(
            kind=_KINDS[raw["kind"]],
            lago_id=raw["lago_id"],
            organization_id=raw["organization_id"],
            version=int(raw["version"]),
            body=raw["body"],
        )
