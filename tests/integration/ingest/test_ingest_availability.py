"""When Kafka does not answer, events get a 503 in Lago's shape (never a 200 for an event
that was not stored); metrics are served on their own port without a key; several workers
share one port, a worker that dies is started again alone, and they stop together."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from gateway.service import IngestServer
from meterflow.catalog import CatalogKind
from meterflow.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


async def test_kafka_unreachable_gives_503_and_catalog_still_works(
    settings: Settings, tenant: Any, ingest_config: Callable[..., Any], read_catalog: Any
) -> None:
    broken = replace(settings, kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "calls"}
    async with (
        IngestServer(broken, ingest_config(produce_timeout=2.0)) as server,
        aiohttp.ClientSession(headers=headers) as session,
    ):
        started = time.monotonic()
        for path, body in [
            ("/api/v1/events", {"event": event}),
            ("/api/v1/events/batch", {"events": [event, {**event, "transaction_id": "u"}]}),
        ]:
            async with session.post(server.url + path, json=body) as response:
                status, answer = response.status, await response.json()
            assert status == 503, answer
            assert answer == {
                "status": 503,
                "error": "Service Unavailable",
                "code": "broker_unavailable",
                "error_details": {"broker": ["unavailable"]},
            }
        assert time.monotonic() - started < 15, "answered within the produce timeout"
        # The catalog lives in Postgres: it keeps working, its records wait in the outbox.
        async with session.post(
            server.url + "/api/v1/customers", json={"customer": {"external_id": "c"}}
        ) as response:
            assert response.status == 200
        async with aiohttp.ClientSession() as plain, plain.get(server.metrics_url) as response:
            metrics = await response.text()
        assert 'ingest_events_rejected_total{reason="broker_unavailable"} 3.0' in metrics

    # Once Kafka is reachable again, the record the broken server could not send goes out.
    async with IngestServer(settings, ingest_config()):
        records = await read_catalog(2, timeout=20)
    assert records[-1].kind == CatalogKind.CUSTOMER
    assert records[-1].body is not None and records[-1].body["external_id"] == "c"


async def test_metrics_count_accepted_and_rejected_events(
    server: IngestServer, tenant: Any
) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "calls"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for body in ({"event": event}, {"event": {**event, "transaction_id": None}}):
            async with session.post(server.url + "/api/v1/events", json=body) as response:
                await response.read()
        async with session.post(
            server.url + "/api/v1/events/batch", json={"events": [event, event, event]}
        ) as response:
            assert response.status == 200
    async with aiohttp.ClientSession() as plain, plain.get(server.metrics_url) as response:
        assert response.status == 200
        metrics = await response.text()
    assert "ingest_events_accepted_total 4.0" in metrics
    assert 'ingest_events_rejected_total{reason="value_is_mandatory"} 1.0' in metrics
    assert "ingest_batch_size_count 1.0" in metrics
    assert 'ingest_request_seconds_count{method="POST",route="/api/v1/events",status="200"}' in (
        metrics
    )
    assert "ingest_kafka_produce_seconds_count 2.0" in metrics


async def test_stopping_finishes_requests_in_flight(
    settings: Settings, tenant: Any, ingest_config: Callable[..., Any], read_topic: Any
) -> None:
    server = IngestServer(settings, ingest_config())
    await server.start()
    headers = {"Authorization": f"Bearer {tenant.api_key}"}

    async def send(session: aiohttp.ClientSession, n: int) -> int | None:
        events = [
            {"transaction_id": f"{n}-{i}", "external_subscription_id": f"s{i}", "code": "c"}
            for i in range(100)
        ]
        try:
            async with session.post(
                server.url + "/api/v1/events/batch", json={"events": events}
            ) as response:
                await response.read()
                finished.append(time.monotonic())
                return response.status
        except aiohttp.ClientError:
            return None  # not yet connected when the listener closed: the client retries

    finished: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        sending = [asyncio.create_task(send(session, n)) for n in range(20)]
        # Stop only once the server has begun handling requests (a fixed sleep is too short
        # on a loaded machine).
        runner_server = server._api.server
        assert runner_server is not None
        deadline = time.monotonic() + 10
        while runner_server.requests_count == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        stopping_at = time.monotonic()
        await server.stop()
        statuses = await asyncio.gather(*sending)
    answered = [n for n, status in enumerate(statuses) if status is not None]
    assert answered, "some requests were in flight when the server stopped"
    assert all(statuses[n] == 200 for n in answered), statuses
    assert max(finished) > stopping_at, "some requests were still in flight at the stop"
    records = await read_topic(settings.topics.events, 100 * len(answered))
    stored = {value["transaction_id"] for _, value in records}
    assert {f"{n}-{i}" for n in answered for i in range(100)} <= stored


def _two_workers(settings: Settings, port: int, metrics_port: int) -> dict[str, str]:
    """The environment of a `meterflow ingest` with two workers on the test's topics."""
    return {
        **os.environ,
        "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
        "METERFLOW_DB_SCHEMA": settings.db_schema,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": settings.dsn,
        "METERFLOW_INGEST_HOST": "127.0.0.1",
        "METERFLOW_INGEST_PORT": str(port),
        "METERFLOW_INGEST_METRICS_PORT": str(metrics_port),
        "METERFLOW_INGEST_WORKERS": "2",
    }


async def test_workers_share_the_port_and_stop_on_sigterm(settings: Settings, tenant: Any) -> None:
    """Two workers serve one port; one `/metrics` shows each worker's series under its
    `worker` label; SIGTERM stops them all with exit status 0."""
    port, metrics_port = closed_port(), closed_port()
    env = _two_workers(settings, port, metrics_port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meterflow.cli", "ingest", env=env
    )
    try:
        async with aiohttp.ClientSession() as plain:

            async def accepted() -> dict[str, float] | None:
                """Each answering worker's accepted events, by its `worker` label."""
                try:
                    async with plain.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                        text = await response.text()
                except aiohttp.ClientError:
                    return None
                up = _values(text, "ingest_worker_up")
                if sorted(up.values()) != [1.0, 1.0]:
                    return None
                return _values(text, "ingest_events_accepted_total")

            deadline = time.monotonic() + 60
            while await accepted() is None:
                assert proc.returncode is None and time.monotonic() < deadline
                await asyncio.sleep(0.2)
            event = {"transaction_id": "t", "external_subscription_id": "s", "code": "calls"}
            headers = {"Authorization": f"Bearer {tenant.api_key}"}
            for n in range(24):  # a new connection each: the kernel spreads them
                async with (
                    aiohttp.ClientSession(headers=headers) as session,
                    session.post(
                        f"http://127.0.0.1:{port}/api/v1/events/batch",
                        json={
                            "events": [{**event, "transaction_id": f"{n}-{i}"} for i in range(5)]
                        },
                    ) as response,
                ):
                    assert response.status == 200
            counts = await accepted()
        assert counts is not None and sorted(counts) == ["0", "1"]
        assert sum(counts.values()) == 24 * 5
        assert all(counts.values()), f"both workers served requests: {counts}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0


def _values(exposition: str, sample: str) -> dict[str, float]:
    """worker label -> value of `sample` in a Prometheus exposition."""
    return {
        s.labels["worker"]: s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == sample
    }


async def test_a_worker_that_dies_is_started_again_while_the_other_serves(
    settings: Settings, tenant: Any
) -> None:
    """SIGKILL of one worker: the other goes on accepting events on the shared port, the
    supervisor starts a new worker in its place, and SIGTERM still stops them all."""
    port, metrics_port = closed_port(), closed_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meterflow.cli",
        "ingest",
        env=_two_workers(settings, port, metrics_port),
    )
    supervisor = psutil.Process(proc.pid)
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "calls"}

    restarts: dict[str, float] = {}

    async def both_up() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as plain,
                plain.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
            ):
                text = await response.text()
        except aiohttp.ClientError:
            return False
        restarts.update(_values(text, "ingest_worker_restarts_total"))
        return sorted(_values(text, "ingest_worker_up").values()) == [1.0, 1.0]

    try:
        deadline = time.monotonic() + 60
        while not await both_up():
            assert proc.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.2)
        first, second = supervisor.children()
        first.kill()
        first.wait(10)
        for n in range(10):  # a new connection each: only the live worker listens now
            async with (
                aiohttp.ClientSession(headers=headers) as session,
                session.post(
                    f"http://127.0.0.1:{port}/api/v1/events",
                    json={"event": {**event, "transaction_id": f"after-kill-{n}"}},
                ) as response,
            ):
                assert response.status == 200, await response.text()
        deadline = time.monotonic() + 60
        while not (await both_up() and len(supervisor.children()) == 2):
            assert proc.returncode is None, "the supervisor gave up on one SIGKILL"
            assert time.monotonic() < deadline, "the killed worker was not started again"
            await asyncio.sleep(0.2)
        assert second in supervisor.children(), "the other worker was left running"
        assert first.pid not in [c.pid for c in supervisor.children()]
        assert sorted(restarts.values()) == [0.0, 1.0], restarts
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0


async def test_workers_stop_by_themselves_when_their_supervisor_is_killed(
    settings: Settings,
) -> None:
    """SIGKILL of `meterflow ingest` (no SIGTERM to pass on) leaves no worker serving."""
    port = closed_port()
    env = _two_workers(settings, port, closed_port())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meterflow.cli", "ingest", env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not _accepts(port):
            assert proc.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.2)
    finally:
        proc.kill()
        await proc.wait()
    deadline = time.monotonic() + 30
    while _accepts(port):
        assert time.monotonic() < deadline, "a worker still serves after its supervisor died"
        await asyncio.sleep(0.2)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
