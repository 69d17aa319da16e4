"""`meterflow aggregator` with METERFLOW_AGGREGATOR_WORKERS=2: two worker processes of one
app under the command's process share the events partitions, each answers current usage
for every subscription (its own, or forwarded to the owner), one `/metrics` serves both
under a `worker` label, a worker that dies is started again alone, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from tests.integration.aggregator.conftest import (
    AggregatorProcess,
    publish_requests,
    wait_partitions_shared,
)
from tests.integration.aggregator.test_aggregator_crash import retried_workload, settle

from meterflow.aggregator_usage import UsageClient
from meterflow.settings import Settings


def two_free_ports() -> int:
    """A port p such that p and p + 1 are both free (worker i listens on p + i)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free ports")


async def test_one_command_runs_two_workers_sharing_the_partitions(
    settings: Settings, worker_factory: Any, unique: str, tmp_path: Path
) -> None:
    subscriptions = 20
    rng = random.Random(unique)
    org = f"org-{unique}"
    stream, expected = await retried_workload(settings, org, rng, subscriptions, 4_000, 400)
    port = two_free_ports()
    command = worker_factory(METERFLOW_AGGREGATOR_WORKERS="2", METERFLOW_AGGREGATOR_PORT=str(port))
    # The second worker's pages (its process is the command's child: never started here).
    second = AggregatorProcess(
        command.env | {"METERFLOW_AGGREGATOR_PORT": str(port + 1)}, tmp_path / "unused.log"
    )
    command.start()
    await command.wait_ready()
    await wait_partitions_shared([command, second], settings.partitions)

    await publish_requests(settings, stream, rng)
    for worker in (command, second):  # each answers every subscription, forwarding half
        await settle(worker, org, subscriptions, expected)

    up = [await command.metric("meterflow_aggregator_worker_up", worker=w) for w in "01"]
    assert up == [1.0, 1.0]
    applied = [
        await command.metric("meterflow_aggregator_events_total", outcome="applied", worker=w)
        for w in "01"
    ]
    assert all(applied) and sum(applied) == 4_000, applied

    # A worker SIGKILLed is started again alone: the command and the other worker go on.
    assert command.proc is not None
    victim = next(
        child
        for child in psutil.Process(command.proc.pid).children()
        if any(c.laddr.port == port + 1 for c in child.net_connections("tcp"))
    )
    victim.kill()
    victim.wait(10)
    assert (await second.get("/ready"))[0] == 0, "the victim's port answers no more"
    status, body = await command.get("/ready")
    assert status == 200 and body["partitions"], (status, body)
    # Until it is back, its subscriptions are unavailable (503), never failed: asked
    # through both workers as ingest asks them, a request reaching the new worker before it
    # can route one included.
    client = UsageClient((command.url, second.url))
    seen: set[int] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        deadline = time.monotonic() + 90
        while True:
            answers = [await client.get(http, f"s{i}", org) for i in range(subscriptions)]
            seen |= {a.status for a in answers}
            if all(a.status == 200 for a in answers):
                break
            assert time.monotonic() < deadline, command.log_tail()
            await asyncio.sleep(0.05)
    assert seen == {200, 503}, seen
    await wait_partitions_shared([command, second], settings.partitions)
    assert command.proc.poll() is None, command.log_tail()
    for worker in (command, second):
        await settle(worker, org, subscriptions, expected)
    restarts = [
        await command.metric("meterflow_aggregator_worker_restarts_total", worker=w) for w in "01"
    ]
    assert restarts == [0.0, 1.0]
    log = command.log_path.read_text()
    assert (
        "aggregator.worker_exited name=aggregator-worker-1: killed by SIGKILL; "
        "starting it again in 1 s"
    ) in log

    assert command.stop() == 0, command.log_tail()
    for worker in (command, second):
        assert await worker.get("/ready") == (0, None), "a worker outlived the command"
