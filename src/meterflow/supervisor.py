"""Supervision under `meterflow up`: start every service, restart one that exits (with
back-off, saying why it died), give up only when a service keeps failing, and keep the
state `meterflow status` reads in the state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meterflow.restarts import RestartPolicy, describe_exit
from meterflow.services import Service


@dataclass
class Child:
    """One supervised service: its current process and its history under this `up`."""

    service: Service
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    ready: bool = False
    restarts: int = 0
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    restart_at: float | None = None  # monotonic instant of a pending restart
    last_exit: str | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "meterflow.cli", self.service.name])
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.ready = False
        self.restart_at = None

    def as_json(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.poll() is None
        return {
            "name": self.service.name,
            "pid": self.proc.pid if running and self.proc is not None else None,
            "ready": self.ready and running,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "last_exit": self.last_exit,
        }


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def say(message: str) -> None:
    print(f"meterflow: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Runs the services until `stop` is set or one keeps failing; writes `up.json`."""

    def __init__(
        self,
        services: Sequence[Service],
        state_file: Path,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.children = [Child(s, s.endpoints().ready_url) for s in services]
        self.state_file = state_file
        self.policy = policy or RestartPolicy()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._checks = ThreadPoolExecutor(max_workers=max(1, len(self.children)))

    def start_all(self) -> None:
        for child in self.children:
            child.start()
        self.write_state()

    def wait_ready(self, stop: threading.Event, timeout: float) -> bool:
        """Supervise until every service is ready (True), or until `stop` or the timeout
        (False, said why); services that die meanwhile are restarted like later on."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            if not self.tick():
                return False
            if all(child.ready for child in self.children):
                return True
            if time.monotonic() > deadline:
                waiting = [c.service.name for c in self.children if not c.ready]
                say(
                    f"{', '.join(waiting)} not ready within {timeout:.0f}s "
                    f"({', '.join(c.ready_url for c in self.children if not c.ready)}); "
                    "their log lines are above"
                )
                return False
            stop.wait(0.3)
        return False

    def run(self, stop: threading.Event) -> int:
        """Supervise until `stop` is set (0) or a service keeps failing (1)."""
        while not stop.wait(0.5):
            if not self.tick():
                return 1
        return 0

    def tick(self) -> bool:
        """One round: reap exits, schedule and perform restarts, refresh readiness.
        False when a service failed too often and `up` must give up."""
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and child.restart_at is None and proc.poll() is not None:
                child.failures.append(now)
                recent = self.policy.recent(child.failures, now)
                child.last_exit = describe_exit(proc.returncode)
                child.ready = False
                if self.policy.gives_up(recent):
                    say(
                        f"{child.service.name} (pid {proc.pid}) {child.last_exit}, its "
                        f"{recent}th failure within {self.policy.window:.0f}s: giving up, "
                        "stopping everything (its log lines are above)"
                    )
                    self.write_state()
                    return False
                delay = self.policy.delay(recent)
                child.restart_at = now + delay
                say(
                    f"{child.service.name} (pid {proc.pid}) {child.last_exit}; restarting it "
                    f"in {delay:.0f}s (failure {recent} of {self.policy.max_failures} allowed "
                    f"within {self.policy.window:.0f}s; its log lines are above)"
                )
                self.write_state()
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start()
                assert child.proc is not None
                pid, n = child.proc.pid, child.restarts
                say(f"{child.service.name} restarted (pid {pid}, restart {n})")
                self.write_state()
        self._refresh_readiness()
        return True

    def _refresh_readiness(self) -> None:
        alive = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        results = list(self._checks.map(lambda c: answers(c.ready_url), alive))
        changed = False
        for child, ready in zip(alive, results, strict=True):
            if ready != child.ready:
                child.ready = ready
                changed = True
                if ready and child.restarts:
                    say(f"{child.service.name} is ready again (restart {child.restarts})")
        if changed:
            self.write_state()

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "services": [child.as_json() for child in self.children],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def stop_all(self, terminate: Callable[..., bool]) -> None:
        """Stop every running service, last started first, with `terminate(pid, timeout=)`."""
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                terminate(child.proc.pid, timeout=30)
                child.proc.wait()
        self._checks.shutdown(wait=False)
        self.state_file.unlink(missing_ok=True)


def read_state(state_file: Path) -> dict[str, Any] | None:
    """What a running `meterflow up` last wrote, or None."""
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state
