"""The narrow table interface the aggregator's logic writes through: every write names the
changelog partition explicitly (the source partition of the subscription), because a batch
holds events of several partitions and Faust would otherwise log each write to the
partition of whichever event happens to be current."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import orjson


class PartitionedStore(Protocol):
    def get(self, key: str, partition: int | None = None) -> Any | None:
        """The key's value, the caller's own (decoded afresh: changing it changes nothing
        stored); `partition`, when the caller knows it, is where to look first."""
        ...

    def put(self, partition: int, key: str, value: Any) -> None: ...

    def delete(self, partition: int, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, Any]]: ...

    def __len__(self) -> int: ...


class MemoryStore:
    """A dict with the PartitionedStore interface (unit tests, benchmarks of the logic).

    As a worker's table (`aggregator.faust_store.FaustTableStore`) it holds values encoded
    (orjson, or with `raw=True` bytes the caller encodes) and decodes them on every `get`,
    so what a caller reads is its own to change."""

    def __init__(self, *, raw: bool = False) -> None:
        self.raw = raw
        self.data: dict[str, bytes] = {}
        self.partitions: dict[str, int] = {}
        self.writes = 0

    def get(self, key: str, partition: int | None = None) -> Any | None:
        found = self.data.get(key)
        return found if found is None or self.raw else orjson.loads(found)

    def put(self, partition: int, key: str, value: Any) -> None:
        self.data[key] = value if self.raw else orjson.dumps(value)
        self.partitions[key] = partition
        self.writes += 1

    def delete(self, partition: int, key: str) -> None:
        self.data.pop(key, None)
        self.partitions.pop(key, None)
        self.writes += 1

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((key, self.get(key)) for key in list(self.data))

    def __len__(self) -> int:
        return len(self.data)
