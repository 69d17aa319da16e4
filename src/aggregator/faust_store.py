"""A Faust table (RocksDB or memory store) behind the aggregator's PartitionedStore interface,
writing its changelog records itself and waiting for the broker's acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.types import TP

# What each table's RocksDB (one per table and partition) may hold in memory: the write
# buffers (memtables) and the block cache. Faust's defaults (64 MB x 3 buffers, a 2 GB
# cache, per partition and table) would hold a million ledgers in RAM; these keep the
# worker's resident memory flat as its state grows, and its state on disk.
ROCKSDB_OPTIONS: dict[str, Any] = {
    "driver": "rocksdict",
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 << 20,
    "block_cache_compressed_size": 0,
}
# And all of them together (issue 15): one block cache and one write-buffer budget for every
# RocksDB of the worker (3 tables x its partitions), charged to that cache, instead of a
# cache and buffers each (12 databases with 4 partitions: up to 96 MB of memtables and 192 MB
# of cache, which filled as a worker wrote and looked like memory per key or per marker).
# Index and filter blocks live in the cache too, so they do not grow outside it.
SHARED_CACHE_BYTES = 32 << 20
# Changelog records handed to the producer between two yields to the event loop (a flush
# of a slice's 500 ledgers, or of a batch's, in one go held it too long: issue 15; 200 a
# step, with 30 ms slices, still made turns over 100 ms while a worker applied first events).
YIELD_EVERY = 50
SHARED_WRITE_BUFFER_BYTES = 16 << 20


class SharedBudgetOptions(RocksDBOptions):
    """Faust's rocksdict options, with the worker's one cache and write-buffer budget."""

    _cache: Any = None
    _buffers: Any = None

    def as_options(self) -> Any:
        cls = SharedBudgetOptions
        if cls._cache is None:
            cls._cache = rocksdict.Cache(SHARED_CACHE_BYTES)
            cls._buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
                SHARED_WRITE_BUFFER_BYTES, False, cls._cache
            )
        options = super().as_options()
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(cls._cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(cls._buffers)
        return options


def share_rocksdb_budget(table: Any) -> None:
    """Open the table's RocksDBs (Faust's store opens one per partition, later) with the
    worker's shared budget; a memory store is left alone."""
    store = table.data
    if getattr(store, "use_rocksdict", False):
        # The same options (Faust's, from ROCKSDB_OPTIONS), opened with the shared budget.
        store.rocksdb_options.__class__ = SharedBudgetOptions


class FaustTableStore:
    """A Faust table behind the PartitionedStore interface.

    Values are bytes in the store (orjson, or with `raw=True` bytes the caller encodes) and
    decoded on every `get`: in RocksDB they stay on disk, in memory they cost their bytes.
    Writes change the local store at once and queue their changelog record; `flush()` hands
    the queued records to the producer and waits until the broker acknowledged them, then
    records (RocksDB) the highest acknowledged changelog offset per partition, so that a
    restarted worker replays only the changelog written after it (Faust's own recovery
    reads from that persisted offset on). Faust's own `send_soon` buffer is bypassed: its
    flush gives up on a message that takes more than 0.1 s, so an offset commit could
    overtake a changelog record still queued.
    """

    def __init__(self, table: Any, *, raw: bool = False) -> None:
        self.table = table
        share_rocksdb_budget(table)
        self.raw = raw
        self.pending: list[tuple[int, bytes, bytes | None]] = []
        # One flush at a time, so records reach the changelog in the order they were
        # written (two overlapping flushes could put an older value of a key after a newer
        # one), and so a flush returns only once earlier writes are durable too.
        self._flush_lock = asyncio.Lock()

    @property
    def _store(self) -> Any:
        return self.table.data

    @property
    def _rocks(self) -> bool:
        return hasattr(self._store, "_dbs")

    def get_raw(self, key: str, partition: int | None = None) -> bytes | None:
        """The stored bytes of `key`: in `partition`'s database first when the caller knows
        it, else (or when not there) in each database this worker holds (bloom filters make
        a miss cheap)."""
        store, bkey = self._store, key.encode()
        if not self._rocks:
            found: bytes | None = store.data.get(bkey)
            return found
        dbs = store._dbs
        if partition is not None:
            db = dbs.get(partition)
            value: bytes | None = None if db is None else db.get(bkey)
            if value is not None:
                return value
        for held, db in list(dbs.items()):
            if held != partition:
                value = db.get(bkey)
                if value is not None:
                    return value
        return None

    def get(self, key: str, partition: int | None = None) -> Any | None:
        raw = self.get_raw(key, partition)
        if raw is None or self.raw:
            return raw
        return orjson.loads(raw)

    def put(self, partition: int, key: str, value: Any) -> None:
        encoded: bytes = value if self.raw else orjson.dumps(value)
        store, bkey = self._store, key.encode()
        if self._rocks:
            store._db_for_partition(partition).put(bkey, encoded)
        else:
            store.data[bkey] = encoded
            store._key_partition[bkey] = partition
        self.pending.append((partition, bkey, encoded))

    def delete(self, partition: int, key: str) -> None:
        store, bkey = self._store, key.encode()
        if self._rocks:
            store._db_for_partition(partition).delete(bkey)
        else:
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
            futures = []
            for n, (partition, key, value) in enumerate(pending):
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # the order is kept: the lock is held
                futures.append(await producer.send(topic, key, value, partition, None, None))
            sent = await asyncio.gather(*futures)
            if self._rocks:
                highest: dict[int, int] = {}
                for metadata in sent:
                    if metadata.offset > highest.get(metadata.partition, -1):
                        highest[metadata.partition] = metadata.offset
                for partition, offset in highest.items():
                    if partition in self._store._dbs:
                        self._store.set_persisted_offset(TP(topic, partition), offset)

    def raw_items(self) -> Iterator[tuple[str, bytes]]:
        """Every (key, encoded value) of the partitions held here, read lazily."""
        store = self._store
        if not self._rocks:
            for bkey, value in list(store.data.items()):
                yield bkey.decode(), value
            return
        for db in list(store._dbs.values()):
            for bkey, value in db.items():
                if bkey != store.offset_key:
                    yield bkey.decode(), value

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in self.raw_items():
            yield key, raw if self.raw else orjson.loads(raw)

    def __len__(self) -> int:
        """The number of keys (RocksDB: its estimate, which costs nothing to read)."""
        store = self._store
        if not self._rocks:
            return len(store.data)
        return sum(
            db.property_int_value("rocksdb.estimate-num-keys") or 0
            for db in list(store._dbs.values())
        )
