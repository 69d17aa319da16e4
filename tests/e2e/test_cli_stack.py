"""`meterflow up` brings up its own Kafka and Postgres, says so when run twice, and
`meterflow down` leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from meterflow.stack.processes import is_alive, read_pid


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_up_twice_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    api_port = _free_port()
    env = {
        **os.environ,
        "METERFLOW_STATE_DIR": str(tmp_path / "state"),
        "METERFLOW_KAFKA_PORT": str(_free_port()),
        "METERFLOW_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "METERFLOW_POSTGRES_PORT": str(_free_port()),
        "METERFLOW_INGEST_PORT": str(api_port),
        "METERFLOW_INGEST_METRICS_PORT": str(_free_port()),
        "METERFLOW_AGGREGATOR_PORT": str(_free_port()),
        "METERFLOW_AGGREGATOR_METRICS_PORT": str(_free_port()),
        "METERFLOW_INVOICER_METRICS_PORT": str(_free_port()),
        "METERFLOW_WEBHOOKS_METRICS_PORT": str(_free_port()),
        "METERFLOW_EXPORTER_PORT": str(_free_port()),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "meterflow.cli"]
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen([*cli, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while "meterflow is up" not in Path(log.name).read_text():
            assert up.poll() is None, f"`meterflow up` exited early:\n{Path(log.name).read_text()}"
            assert time.monotonic() < deadline, "`meterflow up` not ready within 150 s"
            time.sleep(0.5)
        state = tmp_path / "state"
        kafka_pid = read_pid(state / "kafka" / "broker.pid")
        postgres_pid = int((state / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        assert kafka_pid is not None and is_alive(postgres_pid)
        printed = Path(log.name).read_text()
        assert f"http://127.0.0.1:{api_port}" in printed, "up prints where the API listens"
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v1/customers")
        with pytest.raises(urllib.error.HTTPError) as unauthorized:
            urllib.request.urlopen(request, timeout=10)
        unauthorized.value.close()
        assert unauthorized.value.code == 401, "the API is up and asks for a key"
        status = subprocess.run(
            [*cli, "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert f"meterflow up: pid {up.pid}" in status.stdout, status.stdout
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:]}
        assert rows["kafka"][1:3] == [str(kafka_pid), "yes"], status.stdout
        assert rows["postgres"][1:3] == [str(postgres_pid), "yes"], status.stdout
        for service in ("ingest", "aggregator", "invoicer", "webhooks", "exporter"):
            assert rows[service][2:4] == ["yes", "0"], status.stdout

        second = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0
        assert f"already up (pid {up.pid})" in second.stdout

        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert "meterflow is down" in down.stdout
        assert up.wait(timeout=30) == 0
        assert not is_alive(kafka_pid)
        assert not is_alive(postgres_pid)
        assert "meterflow: stopped" in Path(log.name).read_text()
    finally:
        if up.poll() is None:
            subprocess.run([*cli, "down"], env=env, timeout=120, check=False)
        log.close()
