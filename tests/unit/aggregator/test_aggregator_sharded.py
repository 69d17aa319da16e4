"""`ShardedDict` behaves as the dict it replaces, its keys spread over every shard."""

from __future__ import annotations

import pytest

from aggregator.sharded import SHARDS, ShardedDict


def test_it_keeps_what_a_dict_keeps() -> None:
    held: ShardedDict[int] = ShardedDict()
    keys = [f"org\x1fsub-{i}\x1fcharge" for i in range(10 * SHARDS)]
    for n, key in enumerate(keys):
        held[key] = n
    held[keys[0]] = -1  # replaced, not added
    assert len(held) == len(keys)
    assert held.get(keys[0]) == -1 and held.get(keys[-1]) == len(keys) - 1
    assert held.get("absent") is None
    assert all(len(shard) > 0 for shard in held._shards)
    del held[keys[1]]
    assert held.get(keys[1]) is None and len(held) == len(keys) - 1
    with pytest.raises(KeyError):
        del held[keys[1]]
    held.clear()
    assert len(held) == 0 and held.get(keys[2]) is None
