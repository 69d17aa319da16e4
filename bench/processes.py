"""meterflow services as real processes for the benchmarks: free ports, their environment,
readiness, Prometheus samples, resident memory, a scratch deployment on the shared Kafka and
Postgres, and removing the topics Faust created."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient

from meterflow.db import connect, migrate
from meterflow.settings import Settings, Topics
from meterflow.topics import delete_topics, ensure_topics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metrics(port: int) -> dict[str, float]:
    """Every sample of a Prometheus `/metrics` page, by its name with labels; {} if down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return {}
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            found[sample] = float(value)
    return found


def free_ports_in_a_row(count: int) -> int:
    """A port p such that p .. p + count - 1 are all free (aggregator worker i listens on the
    base port + i)."""
    for _ in range(100):
        port = free_port()
        with contextlib.ExitStack() as held:
            try:
                for n in range(1, count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port + n))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no {count} free ports in a row")


def over_workers(samples: dict[str, float]) -> dict[str, float]:
    """`metrics()` samples summed over their `worker` label (a service's several workers)."""
    found: dict[str, float] = {}
    for sample, value in samples.items():
        key = re.sub(r'(?<=\{)worker="\d+",?|,worker="\d+"', "", sample).replace("{}", "")
        found[key] = found.get(key, 0.0) + value
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, all threads) a process and its children (ingest's worker
    processes) used so far: on a busy machine work per CPU second moves less than work per
    wall second."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def ready(port: int, path: str = "/ready") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def owned_partitions(port: int) -> set[int] | None:
    """The events partitions an aggregator worker owns, as its `/ready` says; None while it
    is not ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
            return set(json.load(response)["partitions"])
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # (503: an HTTPError)
        return None


async def shared_partitions(ports: list[int], partitions: int, timeout: float) -> list[set[int]]:
    """The events partitions of each aggregator worker (by its web port) once all are ready,
    each owns some, none the same, and together all `partitions`; TimeoutError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [await asyncio.to_thread(owned_partitions, port) for port in ports]
        held = [o for o in owned if o]
        every = set().union(*held)
        if len(held) == len(ports) and sum(map(len, held)) == len(every) == partitions:
            return held
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers' partitions {owned} within {timeout}s")
        await asyncio.sleep(0.2)


async def delete_app_topics(settings: Settings, app_id: str) -> None:
    """The changelog and repartition topics Faust made for an app id."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(app_id)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def isolated(base: Settings) -> Settings:
    """`base` with topics under a fresh `bench-<id>.` prefix and a `bench_<id>` schema name."""
    run_id = uuid.uuid4().hex[:8]
    return replace(base, topics=Topics(prefix=f"bench-{run_id}."), db_schema=f"bench_{run_id}")


@contextlib.asynccontextmanager
async def scratch_deployment(base: Settings) -> AsyncIterator[Settings]:
    """A deployment of its own on `base`'s Kafka and Postgres: topics under a fresh
    `bench-<id>.` prefix and a migrated `bench_<id>` schema, all removed on exit with the
    topics the aggregator's Faust app made."""
    settings = isolated(base)
    await migrate(settings.dsn, schema=settings.db_schema)
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        yield settings
    finally:
        await delete_app_topics(settings, f"{settings.topics.prefix}aggregator")
        await delete_topics(settings.bootstrap_servers, settings.topics)
        conn = await connect(settings.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        finally:
            await conn.close()


def service_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a service on the benchmark's topics and schema: the caller's own
    METERFLOW_* variables are dropped so a developer's shell cannot change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERFLOW_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DATABASE_URL": settings.dsn,
            "METERFLOW_DB_SCHEMA": settings.db_schema,
            "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
            "METERFLOW_PARTITIONS": str(settings.partitions),
            "METERFLOW_LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """`python -m meterflow.cli <name>` with its output in `log_path`."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meterflow.cli", name],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def failed(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-3000:]
        return RuntimeError(f"{self.name} {what}:\n{tail}")

    async def wait_http(self, port: int, path: str, timeout: float = 180) -> float:
        """Wait until http://127.0.0.1:<port><path> answers 200; the seconds it took."""
        started = time.monotonic()
        while not await asyncio.to_thread(ready, port, path):
            if self.proc.poll() is not None:
                raise self.failed(f"exited with {self.proc.returncode}")
            if time.monotonic() - started > timeout:
                raise self.failed(f"did not answer {path} within {timeout}s")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss(self) -> int:
        """Resident memory in bytes (the service runs in this one process, no children)."""
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Pipeline:
    """meterflow's services as real processes on free ports (see `pipeline`)."""

    def __init__(
        self, settings: Settings, data_dir: Path, names: tuple[str, ...], aggregators: int = 1
    ) -> None:
        self.ports = {n: free_port() for n in ("api", "api_metrics", "agg_metrics", "inv")}
        self.ports["agg"] = free_ports_in_a_row(aggregators)
        self.settings, self.data_dir, self.names = settings, data_dir, names
        self.aggregators = aggregators  # METERFLOW_AGGREGATOR_WORKERS
        self.services: dict[str, ServiceProcess] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def aggregator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['agg']}"

    @property
    def aggregator_web_ports(self) -> list[int]:
        """Each aggregator worker's web port (the first's is the URL ingest asks)."""
        return [self.ports["agg"] + i for i in range(self.aggregators)]

    async def settled(self, timeout: float = 120) -> None:
        """Wait until the aggregator workers (if more than one) share the events partitions
        out between them, each ready: each answers for its own, Faust routes the rest."""
        if self.aggregators < 2:
            return
        try:
            await shared_partitions(self.aggregator_web_ports, self.settings.partitions, timeout)
        except TimeoutError as exc:
            raise self.services["aggregator"].failed(str(exc)) from None

    def env(self, overrides: dict[str, str]) -> dict[str, str]:
        ports = self.ports
        return service_env(
            self.settings,
            METERFLOW_STATE_DIR=str(self.data_dir),
            METERFLOW_INGEST_HOST="127.0.0.1",
            METERFLOW_INGEST_PORT=str(ports["api"]),
            METERFLOW_INGEST_METRICS_PORT=str(ports["api_metrics"]),
            METERFLOW_AGGREGATOR_APP_ID=f"{self.settings.topics.prefix}aggregator",
            METERFLOW_AGGREGATOR_PORT=str(ports["agg"]),
            METERFLOW_AGGREGATOR_METRICS_PORT=str(ports["agg_metrics"]),
            METERFLOW_AGGREGATOR_DATA_DIR=str(self.data_dir / "aggregator"),
            METERFLOW_INVOICER_GROUP=f"{self.settings.topics.prefix}invoicer",
            METERFLOW_INVOICER_METRICS_HOST="127.0.0.1",
            METERFLOW_INVOICER_METRICS_PORT=str(ports["inv"]),
            METERFLOW_AGGREGATOR_WORKERS=str(self.aggregators),
            **overrides,
        )


# Where each service answers once it is up: (port name, path).
_UP = {
    "ingest": ("api_metrics", "/metrics"),
    "aggregator": ("agg", "/ready"),
    "invoicer": ("inv", "/metrics"),
}


@contextlib.asynccontextmanager
async def pipeline(
    settings: Settings,
    data_dir: Path,
    names: tuple[str, ...] = ("ingest", "aggregator"),
    overrides: dict[str, str] | None = None,
    aggregators: int = 1,
) -> AsyncIterator[Pipeline]:
    """The services `names` started on `settings`' topics and schema (their files and logs in
    `data_dir`, `overrides` added to their environment), yielded once each answers; stopped
    on exit. `aggregators`: the aggregator's METERFLOW_AGGREGATOR_WORKERS, its workers of
    one app under its one command, on web ports in a row."""
    started = Pipeline(settings, data_dir, names, aggregators)
    env = started.env(overrides or {})
    try:
        for name in names:
            started.services[name] = ServiceProcess(name, env, data_dir / f"{name}.log")
        for name, service in started.services.items():
            port, path = _UP[name]
            await service.wait_http(started.ports[port], path)
        await started.settled()
        yield started
    finally:
        for service in started.services.values():
            service.stop()
