"""Running meterflow services as real processes (`python -m meterflow.cli <service>`) for
end-to-end tests: start, wait until they answer, SIGTERM or SIGKILL, read their logs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterflow.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(settings: Settings, state_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a service using the test's topics, schema and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERFLOW_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DATABASE_URL": settings.dsn,
            "METERFLOW_DB_SCHEMA": settings.db_schema,
            "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
            "METERFLOW_PARTITIONS": str(settings.partitions),
            "METERFLOW_STATE_DIR": str(state_dir),
            "METERFLOW_LOG_LEVEL": "INFO",
        }
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """One service process; its output goes to `log_path`."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meterflow.cli", self.name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_http(self, url: str, *, timeout: float = 90.0) -> None:
        """Wait until `url` answers 200; fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        pytest.fail(f"{self.name} did not answer {url} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL after 60 s. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# The URL each service answers 200 on once it is ready, by the ports `running_services` chose.
_READY = {
    "ingest": "http://127.0.0.1:{api_metrics}/metrics",
    "aggregator": "http://127.0.0.1:{agg}/ready",
    "invoicer": "http://127.0.0.1:{inv}/metrics",
    "webhooks": "http://127.0.0.1:{hooks}/metrics",
}


@contextlib.contextmanager
def running_services(
    settings: Settings, state_dir: Path, names: tuple[str, ...], **overrides: str
) -> Iterator[dict[str, int]]:
    """The services `names` (ingest, aggregator, invoicer, webhooks) as processes on the
    test's topics and schema, on free ports, with short intervals; yields the ports by name
    once each answers. On exit each is sent SIGTERM and must exit 0."""
    ports = {
        name: free_port() for name in ("api", "api_metrics", "agg", "agg_metrics", "inv", "hooks")
    }
    env = service_env(
        settings,
        state_dir,
        METERFLOW_INGEST_HOST="127.0.0.1",
        METERFLOW_INGEST_PORT=str(ports["api"]),
        METERFLOW_INGEST_METRICS_PORT=str(ports["api_metrics"]),
        METERFLOW_INGEST_OUTBOX_INTERVAL="0.5",
        METERFLOW_AGGREGATOR_URL=f"http://127.0.0.1:{ports['agg']}",
        METERFLOW_AGGREGATOR_PORT=str(ports["agg"]),
        METERFLOW_AGGREGATOR_METRICS_PORT=str(ports["agg_metrics"]),
        METERFLOW_AGGREGATOR_BATCH_WITHIN="0.05",
        METERFLOW_INVOICER_GROUP=f"{settings.topics.prefix}invoicer",
        METERFLOW_INVOICER_METRICS_PORT=str(ports["inv"]),
        METERFLOW_WEBHOOKS_METRICS_PORT=str(ports["hooks"]),
        METERFLOW_WEBHOOKS_POLL="0.05",
        **overrides,
    )
    services = [ServiceProcess(name, env, state_dir / f"{name}.log") for name in names]
    for service in services:
        service.start()
    try:
        for service in services:
            service.wait_http(_READY[service.name].format(**ports))
        yield ports
    finally:
        codes = {s.name: s.stop() for s in reversed(services)}
    assert codes == dict.fromkeys(names, 0), "clean exit on SIGTERM"
