"""A Faust table (memory store) behind the aggregator's PartitionedStore interface, writing
its changelog records itself and waiting for the broker's acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson


class FaustTableStore:
    """A Faust table (memory store) behind the PartitionedStore interface.

    Writes change the local store at once and queue their changelog record; `flush()`
    hands the queued records to the producer and waits until the broker acknowledged them.
    Faust's own `send_soon` buffer is bypassed: its flush gives up on a message that takes
    more than 0.1 s, so an offset commit could overtake a changelog record still queued.
    Values are serialised (orjson) when written, held decoded; with `raw=True` they are bytes
    the caller encodes, held as written (the dedupe markers: compact in memory).
    """

    def __init__(self, table: Any, *, raw: bool = False) -> None:
        self.table = table
        self.raw = raw
        self.pending: list[tuple[int, bytes, bytes | None]] = []
        # One flush at a time, so records reach the changelog in the order they were
        # written (two overlapping flushes could put an older value of a key after a newer
        # one), and so a flush returns only once earlier writes are durable too.
        self._flush_lock = asyncio.Lock()

    @property
    def _store(self) -> Any:
        return self.table.data

    def get(self, key: str) -> Any | None:
        store = self._store
        raw = store.data.get(key.encode())
        if isinstance(raw, bytes | bytearray) and not self.raw:
            raw = orjson.loads(raw)
            store.data[key.encode()] = raw
        return raw

    def put(self, partition: int, key: str, value: Any) -> None:
        store = self._store
        bkey = key.encode()
        store.data[bkey] = value
        store._key_partition[bkey] = partition
        self.pending.append((partition, bkey, value if self.raw else orjson.dumps(value)))

    def delete(self, partition: int, key: str) -> None:
        store = self._store
        bkey = key.encode()
        store.data.pop(bkey, None)
        store._key_partition.pop(bkey, None)
        self.pending.append((partition, bkey, None))

    async def flush(self) -> None:
        """Produce the queued changelog records and wait for the broker's acknowledgement
        (of these and of every record queued before them)."""
        async with self._flush_lock:
            if not self.pending:
                return
            pending, self.pending = self.pending, []
            producer = self.table.app.producer
            topic = self.table.changelog_topic.get_topic_name()
            futures = [
                await producer.send(topic, key, value, partition, None, None)
                for partition, key, value in pending
            ]
            await asyncio.gather(*futures)

    def items(self) -> Iterator[tuple[str, Any]]:
        for bkey in list(self._store.data):
            value = self.get(bkey.decode())
            if value is not None:
                yield bkey.decode(), value

    def __len__(self) -> int:
        return len(self._store.data)
