"""The restart policy of `meterflow up`: back-off doubling to a cap, failures counted in a
sliding window, giving up at the fifth within it; and exits described in words."""

from __future__ import annotations

from meterflow.restarts import RestartPolicy, describe_exit


def test_restart_delay_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    assert policy.recent([0.0, 10.0, 59.0, 70.0], now=70.0) == 3
    assert not policy.gives_up(4)
    assert policy.gives_up(5)


def test_exits_are_described_by_signal_or_code() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(70) == "exited with code 70"
