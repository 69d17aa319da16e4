"""Fixtures of the aggregator tests: a real `meterflow aggregator` worker process on free
ports with the test's own topics, Faust app id (so consumer group and changelog topics),
and data dir; helpers to publish catalog records and events and to read output topics."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from meterflow.catalog import CatalogRecord
from meterflow.event_records import packs
from meterflow.settings import Settings
from support.services import ServiceProcess, free_port, service_env


class AggregatorProcess(ServiceProcess):
    """One aggregator worker run as `python -m meterflow.cli aggregator`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__("aggregator", env, log_path)
        self.port = int(env["METERFLOW_AGGREGATOR_PORT"])
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts}\n".encode())
        super().start()

    async def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"aggregator exited with {self.proc.returncode}:\n{self.log_tail()}")
            status, _ = await self.get("/ready")
            if status == 200:
                return
            await asyncio.sleep(0.3)
        pytest.fail(f"aggregator not ready after {timeout}s:\n{self.log_tail()}")

    async def get(self, path: str) -> tuple[int, Any]:
        def fetch() -> tuple[int, Any]:
            try:
                with urllib.request.urlopen(self.url + path, timeout=10) as response:
                    return response.status, orjson.loads(response.read())
            except urllib.error.HTTPError as exc:
                body = exc.read()
                try:
                    return exc.code, orjson.loads(body or b"null")
                except orjson.JSONDecodeError:  # e.g. routed to a worker that just died
                    return exc.code, body.decode("utf-8", "replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return 0, None

        return await asyncio.to_thread(fetch)

    async def metric(self, name: str, **labels: str) -> float:
        """The current value of one Prometheus sample of the worker (0 when absent)."""
        port = int(self.env["METERFLOW_AGGREGATOR_METRICS_PORT"])

        def fetch() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text: str = r.read().decode()
                    return text
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return ""

        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in (await asyncio.to_thread(fetch)).splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == wanted:
                return float(value)
        return 0.0

    async def wait_metric(
        self, name: str, at_least: float, timeout: float = 60.0, **labels: str
    ) -> None:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = await self.metric(name, **labels)
            if value >= at_least:
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"{name}{labels} stayed at {value} < {at_least}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


def worker_env(settings: Settings, data_dir: Path, **overrides: str) -> dict[str, str]:
    return service_env(
        settings,
        data_dir,
        **{
            "METERFLOW_AGGREGATOR_APP_ID": f"{settings.topics.prefix}aggregator",
            "METERFLOW_AGGREGATOR_PORT": str(free_port()),
            "METERFLOW_AGGREGATOR_METRICS_PORT": str(free_port()),
            "METERFLOW_AGGREGATOR_DATA_DIR": str(data_dir / "aggregator"),
            "METERFLOW_AGGREGATOR_BATCH_WITHIN": "0.05",
            "METERFLOW_AGGREGATOR_CLOSE_INTERVAL": "0.5",
            "METERFLOW_AGGREGATOR_COMMIT_INTERVAL": "0.5",
            # A killed worker's group membership lapses after this; the broker's minimum.
            "METERFLOW_AGGREGATOR_SESSION_TIMEOUT": "6",
            **overrides,
        },
    )


@pytest.fixture
async def worker_factory(settings: Settings, tmp_path: Path) -> AsyncIterator[Any]:
    """`worker_factory(**env_overrides)`: an AggregatorProcess (not started) for this test;
    every one is stopped, and the Faust topics of the test's app id deleted, afterwards."""
    made: list[AggregatorProcess] = []

    def make(**overrides: str) -> AggregatorProcess:
        env = worker_env(settings, tmp_path, **overrides)
        worker = AggregatorProcess(env, tmp_path / f"aggregator-{len(made)}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()
    await delete_app_topics(settings)


async def delete_app_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        app_id = f"{settings.topics.prefix}aggregator"
        names = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def publish_catalog(settings: Settings, records: Iterable[CatalogRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send(
                settings.topics.catalog,
                key=record.key,
                value=record.encode(),
                headers=record.headers,
            )
        await producer.flush()
    finally:
        await producer.stop()


def event(
    organization_id: str,
    external_subscription_id: str,
    transaction_id: str,
    timestamp: float,
    code: str = "calls",
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The events-topic wire form: billing's event wire form plus organization_id."""
    return {
        "organization_id": organization_id,
        "transaction_id": transaction_id,
        "external_subscription_id": external_subscription_id,
        "code": code,
        "timestamp": timestamp,
        "properties": properties or {},
    }


async def publish_events(
    settings: Settings, events: Iterable[dict[str, Any] | tuple[bytes, bytes]]
) -> None:
    """Produce events keyed by external_subscription_id (or raw (key, value) pairs)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        for item in events:
            if isinstance(item, tuple):
                key, value = item
            else:
                key, value = item["external_subscription_id"].encode(), orjson.dumps(item)
            await producer.send(settings.topics.events, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def publish_requests(
    settings: Settings, events: list[dict[str, Any]], rng: random.Random
) -> None:
    """Write the events as ingest does: requests of 1 to 60 events, each written as one
    record per partition (a lone event or a pack)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        pending = []
        start = 0
        while start < len(events):
            request = events[start : start + rng.randint(1, 60)]
            start += len(request)
            encoded = [(e["external_subscription_id"].encode(), orjson.dumps(e)) for e in request]
            for partition, value in packs(encoded, settings.partitions):
                pending.append(
                    await producer.send(settings.topics.events, value, partition=partition)
                )
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_partitions_shared(workers: list[AggregatorProcess], partitions: int) -> None:
    """Until the workers are all ready and own disjoint, non-empty sets of partitions that
    cover all `partitions` (fails after 90 s)."""
    deadline = time.monotonic() + 90
    while True:
        pages = [await worker.get("/ready") for worker in workers]
        owned = [set(body["partitions"]) for status, body in pages if status == 200]
        every = sorted(p for mine in owned for p in mine)
        if len(owned) == len(workers) and all(owned) and every == list(range(partitions)):
            return
        assert time.monotonic() < deadline, f"partitions {pages}:\n{workers[0].log_tail()}"
        await asyncio.sleep(0.3)


async def usage_totals(
    worker: AggregatorProcess, org: str, subscriptions: int
) -> dict[str, tuple[int, Decimal]] | None:
    """(calls events, gb units) of subscriptions s0..s<n-1> as the worker's current-usage view
    shows them (asked of `worker`, answered by whichever worker owns the partition), or None
    while any is unavailable."""
    found = {}
    for i in range(subscriptions):
        status, body = await worker.get(f"/current-usage/s{i}?organization_id={org}")
        if status != 200:
            return None
        charges = {c["billable_metric"]["code"]: c for c in body["customer_usage"]["charges_usage"]}
        found[f"s{i}"] = (charges["calls"]["events_count"], Decimal(charges["gb"]["units"]))
    return found


async def read_topic(
    settings: Settings,
    topic: str,
    count: int,
    *,
    timeout: float = 60.0,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """At least `count` records of `topic` from its beginning, and then until `until` holds
    of them (fails after `timeout`)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
            len(found) < count or (until is not None and not until(found))
        ):
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                found.extend(orjson.loads(m.value) for m in messages)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    assert len(found) >= count, f"only {len(found)} of {count} records on {topic}: {found}"
    return found
