"""Python's garbage collector tuned for a service that allocates many short-lived objects per
request or batch (parsed JSON, records, fees, answers), which reference counting frees."""

from __future__ import annotations

import gc


def collect_less_often(young_every: int) -> None:
    """CPython's default runs a young collection every 700 allocations, and full ones walk
    every module object too: collect young objects every `young_every` allocations, and
    leave what startup built (modules, the app, the clients) out of every collection. Call
    it once, when startup is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_every, 20, 20)
