"""The dedupe markers' in-memory index: per subscription (ledger key) and expiry day, its
64-bit hashes with no Python object per marker (see `aggregator.markers`)."""

from __future__ import annotations

import sys
from array import array
from typing import TypeAlias, cast

from aggregator.bigday import BigDay
from aggregator.sharded import ShardedDict

Index: TypeAlias = "ShardedDict[Held]"

# Hashes of one (subscription, expiry day) searched as packed bytes (a linear scan in C, 512
# bytes at most); beyond, a BigDay (`aggregator/bigday.c`: tables of 64-bit slots).
SMALL = 64


# A subscription's hashes: one day's (an int, `day << 64 | hash`, while it holds one; packed
# bytes, the day then the hashes, 8 bytes each; or a BigDay), or several days' in a list.
Part: TypeAlias = "int | bytes | BigDay"
Held: TypeAlias = "Part | list[Part]"
HASH_MASK = (1 << 64) - 1


def in_packed(packed: bytes, hashed: int) -> bool:
    """Whether packed day hashes (after their 8-byte day) hold `hashed` at a hash's place."""
    needle = hashed.to_bytes(8, "little")
    at = packed.find(needle, 8)
    while at > 0 and at & 7:  # found across two hashes: look on
        at = packed.find(needle, at + 1)
    return at > 0


def holds(part: Part, hashed: int) -> bool:
    if type(part) is int:
        return part & HASH_MASK == hashed
    if type(part) is bytes:
        return in_packed(part, hashed)
    return hashed in cast(BigDay, part)


def held_holds(held: Held | None, hashed: int) -> bool:
    """Whether a subscription's hashes (what the index holds for its ledger key, None for
    none) hold `hashed`."""
    if held is None:
        return False
    if type(held) is list:
        return any(holds(part, hashed) for part in held)
    return holds(cast(Part, held), hashed)


def day_of(part: Part) -> int:
    if type(part) is int:
        return part >> 64
    if type(part) is bytes:
        return int.from_bytes(part[:8], "little")
    return cast(BigDay, part).day


def part_size(part: Part) -> int:
    if type(part) is int:
        return 1
    return len(part) // 8 - 1 if type(part) is bytes else len(cast(BigDay, part))


def new_part(day: int, hashes: list[int]) -> tuple[Part, int]:
    """A day's part holding `hashes`, and how many distinct hashes it holds."""
    if len(hashes) == 1:
        return day << 64 | hashes[0], 1
    fresh = list(dict.fromkeys(hashes))
    if len(fresh) > SMALL:
        return BigDay(day, fresh), len(fresh)
    if len(fresh) == 1:
        return day << 64 | fresh[0], 1
    return day.to_bytes(8, "little") + pack(fresh), len(fresh)


def grown(part: Part, day: int, hashes: list[int], new: bool) -> tuple[Part, int]:
    """The day's part with `hashes` added, and how many of them were new (all, when the
    caller knows them `new`: packed bytes are then not searched first)."""
    if type(part) is int:
        fresh = [h for h in hashes if h != part & HASH_MASK]
        if not fresh:
            return part, 0
        grown, size = new_part(day, [part & HASH_MASK, *fresh])
        return grown, size - 1
    if type(part) is bytes:
        if new:
            fresh = hashes
        else:
            held = set(unpack(part[8:]))  # (one set, not a search per hash)
            fresh = [h for h in dict.fromkeys(hashes) if h not in held]
        if len(part) // 8 - 1 + len(fresh) > SMALL:
            return BigDay(day, [*unpack(part[8:]), *fresh]), len(fresh)
        return part + pack(fresh), len(fresh)
    big = cast(BigDay, part)
    return big, big.add(hashes)


def add_hashes(
    index: Index, ledger_key: str, day: int, hashes: list[int], new: bool = False
) -> int:
    """Add a subscription's hashes of one expiry day to the index; returns how many were new
    (a replay may have written a hash to a second segment of the same day; `new`: the
    caller knows they are all distinct and not held)."""
    held = index.get(ledger_key)
    if held is None:
        index[ledger_key], added = new_part(day, hashes)
        return added
    if not isinstance(held, list):
        if day_of(held) == day:
            index[ledger_key], added = grown(held, day, hashes, new)
            return added
        part, added = new_part(day, hashes)
        index[ledger_key] = [held, part]
        return added
    for i, part in enumerate(held):
        if day_of(part) == day:
            held[i], added = grown(part, day, hashes, new)
            return added
    part, added = new_part(day, hashes)
    held.append(part)
    return added


def drop_day(index: Index, ledger_key: str, day: int) -> int:
    """Remove a subscription's hashes of an expired day (those of every segment of that
    day: they all expire together); returns how many went. A hash is written to a second
    segment only when the index lost it (see `processing`), so no other day keeps it."""
    held = index.get(ledger_key)
    if held is None:
        return 0
    if not isinstance(held, list):
        if day_of(held) != day:
            return 0
        del index[ledger_key]
        return part_size(held)
    kept = [part for part in held if day_of(part) != day]
    gone = sum(part_size(part) for part in held) - sum(part_size(part) for part in kept)
    if not kept:
        del index[ledger_key]
    elif len(kept) < len(held):
        index[ledger_key] = kept[0] if len(kept) == 1 else kept
    return gone


def pack(hashes: list[int]) -> bytes:
    packed = array("Q", hashes)
    if packed.itemsize != 8:  # pragma: no cover - every platform Python runs on today
        raise RuntimeError("array('Q') is not 64-bit here")
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tobytes()


def unpack(data: bytes | bytearray) -> list[int]:
    packed = array("Q", data)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()
