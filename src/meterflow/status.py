"""`meterflow status`: Kafka, Postgres and every service of a running `meterflow up`, with
pid, readiness and restart count."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from meterflow.settings import Settings
from meterflow.stack.local import LocalStack
from meterflow.stack.processes import read_pid
from meterflow.supervisor import read_state


def reachable(address: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to `host:port` opens within `timeout` seconds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout):
            return True
    except (OSError, ValueError):
        return False


def _postgres_address(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"


def gather(settings: Settings) -> dict[str, Any]:
    """The status as data (`meterflow status --json` prints it as is)."""
    up_pid = read_pid(settings.state_dir / "up.pid")
    embedded = LocalStack.from_settings(settings).running()
    kafka_address = settings.bootstrap_servers.split(",")[0]
    postgres_address = _postgres_address(settings.dsn)
    components = [
        {
            "name": "kafka",
            "pid": embedded.get("kafka"),
            "embedded": "kafka" in embedded,
            "address": settings.bootstrap_servers,
            "ready": reachable(kafka_address),
        },
        {
            "name": "postgres",
            "pid": embedded.get("postgres"),
            "embedded": "postgres" in embedded,
            "address": postgres_address,
            "ready": reachable(postgres_address),
        },
    ]
    state = read_state(settings.state_dir / "up.json") if up_pid is not None else None
    return {
        "up": {"pid": up_pid, "started_at": state["started_at"] if state else None},
        "components": components,
        "services": state["services"] if state else [],
    }


def render(status: dict[str, Any]) -> str:
    """The status as the table `meterflow status` prints."""
    up = status["up"]
    lines = [
        f"meterflow up: pid {up['pid']} since {up['started_at']}"
        if up["pid"]
        else "meterflow up: not running"
    ]
    lines.append(f"  {'name':<11} {'pid':>7}  {'ready':<5}  {'restarts':>8}  detail")
    for c in status["components"]:
        detail = ("embedded " if c["embedded"] else "external ") + c["address"]
        pid = c["pid"] or "-"
        lines.append(f"  {c['name']:<11} {pid!s:>7}  {_yes(c['ready']):<5}  {'-':>8}  {detail}")
    for s in status["services"]:
        detail = f"started {s['started_at']}"
        if s["last_exit"]:
            detail += f", last {s['last_exit']}"
        pid = s["pid"] or "-"
        row = f"  {s['name']:<11} {pid!s:>7}  {_yes(s['ready']):<5}  {s['restarts']:>8}  {detail}"
        lines.append(row)
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
