"""Giving the C allocator's free memory back to the operating system now and then."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# At most this often (seconds); the call takes a few milliseconds, in a thread.
TRIM_EVERY = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class FreeMemoryReturner:
    """glibc keeps the memory a process freed for its next allocations, in heaps that a few
    live blocks pin, and a worker frees much of it: every batch decodes records, encodes
    ledgers and changelog records of a few hundred bytes to a few hundred kilobytes each,
    from several threads (Kafka's, RocksDB's). Measured in the memory benchmark (issue 15):
    50 to 70 MB of a loaded worker's 230 to 260 MB resident memory were such free blocks,
    about half of what looked like memory per dedupe marker. `malloc_trim(0)` hands the free
    pages back (the call releases the GIL: it runs in a thread, off the event loop)."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._last = 0.0

    async def maybe(self) -> None:
        if self._trim is None or time.monotonic() - self._last < TRIM_EVERY:
            return
        self._last = time.monotonic()
        started = time.perf_counter()
        await asyncio.to_thread(self._trim, 0)
        log.debug("aggregator.malloc_trim seconds=%.4f", time.perf_counter() - started)
