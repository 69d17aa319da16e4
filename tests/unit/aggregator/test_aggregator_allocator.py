"""The worker limits glibc's malloc arenas unless the environment chose."""

from __future__ import annotations

from aggregator.allocator import ARENAS, M_ARENA_MAX, limit_arenas


def test_the_worker_limits_malloc_arenas_unless_malloc_arena_max_is_set() -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(parameter: int, value: int) -> int:
        calls.append((parameter, value))
        return 1

    assert limit_arenas({}, mallopt) == ARENAS == 2
    assert calls == [(M_ARENA_MAX, 2)]
    assert limit_arenas({"MALLOC_ARENA_MAX": "8"}, mallopt) is None
    assert len(calls) == 1


def test_limiting_arenas_in_this_process_works_on_glibc() -> None:
    """The real mallopt accepts the parameter (1) on glibc, the C library CI runs on."""
    assert limit_arenas({}) == ARENAS
