"""The event loop's long wake-ups in a py-spy trace: what ran while the worker held its loop.

    .venv/bin/python -m bench.stall_profile TRACE.json [--over-ms 100] [--thread TID]

`py_spy(pid, path)` records a worker as a Chrome trace (`py-spy record -f chrometrace -t`:
every sample timestamped, per thread); this reads it back and lists each stretch over
`--over-ms` during which the event loop thread ran one callback after another without going
back to its selector (one `asyncio.events.Handle._run` span, the stack py-spy merges across
consecutive samples), with the heaviest path of frames under it and the functions that took
most of it. That is what the worker's `meterflow_aggregator_loop_busy_seconds` histogram
counts over 100 ms, named.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

RUN = ("Handle._run", "events.py")  # asyncio.events.Handle._run: one callback of the loop
# Callbacks closer than this (about one sample at 100 Hz) ran back to back: one stretch.
GAP_US = 11_000


@dataclass
class Span:
    name: str
    where: str
    start: float  # microseconds
    end: float = 0.0
    children: list[Span] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return (self.end - self.start) / 1000


def py_spy(pid: int, path: Path, *, native: bool = False) -> subprocess.Popen[bytes]:
    """Start py-spy recording `pid` as a Chrome trace to `path` until `stop_py_spy`."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    # --idle: the loop's waits in its selector are sampled too, so that two callbacks with
    # a wait between them are two spans, not one.
    command = [spy, "record", "-f", "chrometrace", "-t", "-i", "-r", "100", "-o", str(path)]
    return subprocess.Popen(
        [*command, *(["--native"] if native else []), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    """Ask py-spy to write its trace (SIGINT) and wait for it."""
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    spy.wait(120)


def spans(events: list[dict[str, Any]]) -> dict[int, list[Span]]:
    """The trace's begin/end events as trees of spans, by thread."""
    roots: dict[int, list[Span]] = defaultdict(list)
    stacks: dict[int, list[Span]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e["ts"]):
        tid, stack = event["tid"], stacks[event["tid"]]
        args = event.get("args", {})
        if event["ph"] == "B":
            where = f"{Path(args.get('filename', '')).name}:{args.get('line')}"
            span = Span(event["name"], where, event["ts"])
            (stack[-1].children if stack else roots[tid]).append(span)
            stack.append(span)
        elif event["ph"] == "E" and stack:
            stack.pop().end = event["ts"]
    return roots


def callbacks(roots: list[Span]) -> list[Span]:
    """The loop's callbacks (`Handle._run` spans, outermost only), in time order."""
    found: list[Span] = []
    todo = list(roots)
    while todo:
        span = todo.pop()
        if span.name == RUN[0] and span.where.startswith(RUN[1]):
            found.append(span)
            continue
        todo.extend(span.children)
    return sorted(found, key=lambda s: s.start)


def long_runs(roots: list[Span], over_ms: float) -> list[Span]:
    """Stretches of callbacks run back to back (no wait sampled between them) longer than
    `over_ms`, each as one span holding its callbacks."""
    stretches: list[Span] = []
    for run in callbacks(roots):
        last = stretches[-1] if stretches else None
        if last is not None and run.start - last.end < GAP_US:
            last.children.append(run)
            last.end = max(last.end, run.end)
        else:
            stretches.append(Span("stretch", "", run.start, run.end, [run]))
    return [s for s in stretches if s.ms > over_ms]


def heaviest_path(span: Span, depth: int = 40) -> list[str]:
    """Down from `span`, the child that took the most each time."""
    path = []
    while span.children and depth:
        span = max(span.children, key=lambda s: s.ms)
        path.append(f"{span.name} ({span.where}) {span.ms:.0f} ms")
        depth -= 1
    return path


def self_times(span: Span) -> dict[str, float]:
    """Milliseconds of `span` spent in each function itself (not in its children)."""
    times: dict[str, float] = defaultdict(float)
    todo = [span]
    while todo:
        s = todo.pop()
        times[f"{s.name} ({s.where})"] += s.ms - sum(c.ms for c in s.children)
        todo.extend(s.children)
    return times


def report(path: Path, over_ms: float, thread: int | None = None) -> list[dict[str, Any]]:
    by_thread = spans(orjson.loads(path.read_bytes()))
    if thread is None:  # the loop's thread: the one with the most time in callbacks
        thread = max(by_thread, key=lambda t: len(callbacks(by_thread[t])))
    found = []
    for run in long_runs(by_thread[thread], over_ms):
        heaviest = sorted(self_times(run).items(), key=lambda item: -item[1])[:6]
        found.append(
            {
                "at_s": round(run.start / 1e6, 2),
                "ms": round(run.ms),
                "path": heaviest_path(run),
                "self": [(name, round(ms)) for name, ms in heaviest if ms >= 1],
            }
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--over-ms", type=float, default=100.0)
    parser.add_argument("--thread", type=int)
    args = parser.parse_args()
    for stall in report(args.trace, args.over_ms, args.thread):
        print(f"{stall['ms']} ms at {stall['at_s']} s")
        for line in stall["path"]:
            print(f"    {line}")
        for name, ms in stall["self"]:
            print(f"      self {ms:5d} ms  {name}")


if __name__ == "__main__":
    main()
