"""Pid files and process signals for the daemons of the local stack."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Protocol

import psutil


class HomePath:
    """A file or folder of a local server, under its `home` folder."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, server: _HasHome, owner: type) -> Path:
        return server.home / self.name


class _HasHome(Protocol):
    @property
    def home(self) -> Path: ...


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` (its first word) if that process is still alive, else
    None (also when the file cannot be read: a server of another user being set up)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, PermissionError, ValueError, IndexError):
        return None
    return pid if is_alive(pid) else None


def is_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).send_signal(signum)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, *, timeout: float) -> bool:
    """SIGTERM `pid`, wait up to `timeout` s, then SIGKILL. True if it stopped gracefully."""
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, 30)
    return False
