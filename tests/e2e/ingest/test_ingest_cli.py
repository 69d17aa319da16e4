"""`meterflow create-organization` prints a working key; `meterflow ingest` serves Lago's
client and, on SIGTERM, finishes, flushes and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from lago_python_client.client import Client
from lago_python_client.models import Customer, Event
from prometheus_client.parser import text_string_to_metric_families

from meterflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "`meterflow ingest` exited early"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} not up within {timeout} s"
            time.sleep(0.2)


async def test_create_organization_then_serve_then_sigterm(settings: Settings) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": settings.dsn,
        "METERFLOW_DB_SCHEMA": settings.db_schema,
        "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
        "METERFLOW_INGEST_HOST": "127.0.0.1",
        "METERFLOW_INGEST_PORT": str(_free_port()),
        "METERFLOW_INGEST_METRICS_PORT": str(_free_port()),
    }
    cli = [sys.executable, "-m", "meterflow.cli"]
    created = await asyncio.to_thread(
        subprocess.run,
        [*cli, "create-organization", "--name", "Acme", "--timezone", "Europe/Paris"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = next(
        line.split(": ", 1)[1] for line in created.stdout.splitlines() if line.startswith("api key")
    )
    refused = await asyncio.to_thread(
        subprocess.run,
        [*cli, "create-organization", "--name", "X", "--timezone", "Mars/Olympus"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "IANA" in refused.stderr

    proc = subprocess.Popen([*cli, "ingest"], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{env['METERFLOW_INGEST_PORT']}"
        await asyncio.to_thread(_wait_until_up, url, proc)
        lago = Client(api_key=key, api_url=url)
        customer = await asyncio.to_thread(lago.customers.create, Customer(external_id="c-1"))
        assert customer.applicable_timezone == "Europe/Paris"
        event = await asyncio.to_thread(
            lago.events.create,
            Event(transaction_id="t-1", external_subscription_id="s-1", code="calls"),
        )
        assert event.transaction_id == "t-1"
        metrics = httpx.get(f"http://127.0.0.1:{env['METERFLOW_INGEST_METRICS_PORT']}/metrics").text
        accepted = [  # one series per worker (`auto`: one per core), or one without a label
            s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
            if s.name == "ingest_events_accepted_total"
        ]
        assert sum(accepted) == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, raw_stderr = await asyncio.to_thread(proc.communicate, None, 60)
    stderr = raw_stderr.decode()
    assert proc.returncode == 0, stderr
    assert "ingest.stopping reason=signal" in stderr and "ingest.stopped" in stderr
