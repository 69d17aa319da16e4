"""A dict of string keys held as `SHARDS` dicts, the key's hash choosing one: for the state
that holds an entry per subscription or per ledger (a million at scale).

A Python dict grows by rebuilding its whole table in one go, once its keys outnumber two
thirds of it: 38 ms at 700,000 keys, 74 ms at 1.4 million (in-process, this 2-core
machine). The dicts of one key each per ledger (the dedupe marker index, the close schedule)
and per subscription (the period cache) grow together while a worker applies first events,
and crossed their sizes in the same slice: one stall of 100 to 190 ms, at 70% of a million
keys' first events (`bench.aggregator_restart`, issue 15). Split in 256, a rebuild moves a
256th of the keys, and the shards, filled at random, rebuild in different slices.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")

SHARDS = 256  # a power of two: a shard is the hash's low bits


class ShardedDict(Generic[V]):
    """The `dict` operations the worker's state uses, on `SHARDS` dicts."""

    __slots__ = ("_shards",)

    def __init__(self) -> None:
        self._shards: list[dict[str, V]] = [{} for _ in range(SHARDS)]

    def _shard(self, key: str) -> dict[str, V]:
        return self._shards[hash(key) & (SHARDS - 1)]

    def get(self, key: str) -> V | None:
        return self._shard(key).get(key)

    def __setitem__(self, key: str, value: V) -> None:
        self._shard(key)[key] = value

    def __delitem__(self, key: str) -> None:
        del self._shard(key)[key]

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    def clear(self) -> None:
        for shard in self._shards:
            shard.clear()
