"""What the event loop's thread was running when a wake-up came late: a sampling thread."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from types import FrameType

# The worker's own packages: a sample is named by its innermost frame of these too.
OWN = frozenset({"aggregator", "meterflow", "billing"})


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}"


def describe(frame: FrameType | None) -> str:
    """A sample's name: the innermost frame, and the innermost of the worker's own code
    (`aggregator`, `meterflow`, `billing`) when that is another one."""
    if frame is None:
        return "?"
    inner = _where(frame)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in OWN and module != __name__:
            own = _where(frame)
            return inner if own == inner else f"{own} > {inner}"
        frame = frame.f_back
    return inner


class LoopSampler:
    """Every `every` seconds, from a thread of its own, where the event loop's thread is
    (its innermost frame and the worker's own frame around it); `summary(since)` names the
    most frequent since an instant. Made on the loop's thread. Its cost is one GIL hand-over
    per sample (the loop's thread gives the GIL up every 5 ms anyway while it runs Python);
    a C call that holds the GIL (a garbage collection, say) is sampled once it returns."""

    def __init__(self, every: float = 0.005, keep: float = 5.0) -> None:
        self.every = every
        self.thread_id = threading.get_ident()
        self.samples: deque[tuple[float, str]] = deque(maxlen=int(keep / every))
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="aggregator-loop-sampler", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            frame = sys._current_frames().get(self.thread_id)
            self.samples.append((time.perf_counter(), describe(frame)))

    def summary(self, since: float, top: int = 5) -> str:
        """The most frequent samples taken after `since` (a `time.perf_counter()`), with
        their share: `name x count` separated by ` | `."""
        found = Counter(name for at, name in list(self.samples) if at >= since)
        return " | ".join(f"{name} x{n}" for name, n in found.most_common(top))
