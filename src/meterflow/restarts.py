"""When a process that exited is started again: the restart policy `meterflow up` applies to
a service and a service's command to one of its workers (`meterflow.workers`), and exits
described in words."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How soon a process that exited (a service under `up`, a worker under its service's
    command) is started again, and when its supervisor stops trying."""

    initial_delay: float = 1.0  # seconds before the first restart, doubled per recent failure
    max_delay: float = 30.0
    window: float = 60.0  # failures older than this are forgotten
    max_failures: int = 5  # this many failures within `window` and the supervisor gives up

    def recent(self, failures: Sequence[float], now: float) -> int:
        """How many of the failure instants (monotonic seconds) fall within the window."""
        return sum(1 for at in failures if now - at <= self.window)

    def delay(self, recent_failures: int) -> float:
        """Seconds to wait before restarting after the `recent_failures`-th recent failure."""
        return min(self.max_delay, self.initial_delay * 2.0 ** max(0, recent_failures - 1))

    def gives_up(self, recent_failures: int) -> bool:
        return recent_failures >= self.max_failures


def describe_exit(returncode: int) -> str:
    """Why a process ended, in words: the signal that killed it, or its exit code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"
