"""Giving the C allocator's free memory back to the operating system now and then."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# At most this often (seconds); the call takes a few milliseconds, in a thread.
TRIM_EVERY = 10.0
# glibc's malloc arenas for the worker, unless MALLOC_ARENA_MAX says otherwise (see
# limit_arenas); mallopt's parameter number for it (malloc.h).
ARENAS = 2
M_ARENA_MAX = -8


def _libc_function(name: str) -> Callable[..., int] | None:
    """A glibc function, or None where the C library has none (musl, macOS)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return found


def _malloc_trim() -> Callable[[int], int] | None:
    return _libc_function("malloc_trim")


def limit_arenas(environ: Mapping[str, str] = os.environ, mallopt: Any = None) -> int | None:
    """Let glibc's malloc use at most `ARENAS` arenas (heaps), unless the environment's
    `MALLOC_ARENA_MAX` (which glibc reads itself) chose; call it before any thread starts.

    By default glibc gives each thread that allocates at once with another an arena of its
    own, up to 8 per core, and an arena keeps what was freed in it: Kafka's, RocksDB's and
    the event loop's threads each pinned tens of megabytes of free blocks, the larger part of
    what a loaded worker's resident memory grew by per dedupe marker (issue 15). Two arenas
    cost a little contention between those threads. Returns the limit set (None: left)."""
    if "MALLOC_ARENA_MAX" in environ:
        return None
    mallopt = mallopt or _libc_function("mallopt")
    if mallopt is None or not mallopt(M_ARENA_MAX, ARENAS):
        return None
    return ARENAS


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
