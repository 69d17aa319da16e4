"""The narrow table interface the aggregator's logic writes through: every write names the
changelog partition explicitly (the source partition of the subscription), because a batch
holds events of several partitions and Faust would otherwise log each write to the
partition of whichever event happens to be current."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class PartitionedStore(Protocol):
    def get(self, key: str, partition: int | None = None) -> Any | None:
        """The key's value; `partition`, when the caller knows it, is where to look first."""
        ...

    def put(self, partition: int, key: str, value: Any) -> None: ...

    def delete(self, partition: int, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, Any]]: ...

    def __len__(self) -> int: ...


class MemoryStore:
    """A dict with the PartitionedStore interface (unit tests, benchmarks of the logic)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.partitions: dict[str, int] = {}
        self.writes = 0

    def get(self, key: str, partition: int | None = None) -> Any | None:
        return self.data.get(key)

    def put(self, partition: int, key: str, value: Any) -> None:
        self.data[key] = value
        self.partitions[key] = partition
        self.writes += 1

    def delete(self, partition: int, key: str) -> None:
        self.data.pop(key, None)
        self.partitions.pop(key, None)
        self.writes += 1

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self.data.items()))

    def __len__(self) -> int:
        return len(self.data)
