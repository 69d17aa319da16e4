"""`meterflow ingest` as several worker processes sharing the API port (SO_REUSEPORT: the
kernel spreads the connections), each a whole ingest app with its own producer, pool and
outbox loop, and one `/metrics` for all of them.

The command's own process supervises: it passes SIGTERM and SIGINT on to every worker (each
finishes its requests and flushes its producer), stops the others if one exits, and serves
`/metrics` on METERFLOW_INGEST_METRICS_PORT: every worker's own series, fetched from the
worker at each scrape (each listens on a port of its own on 127.0.0.1) and labelled
`worker="<i>"`, plus `ingest_worker_up{worker}`. Prometheus scrapes that one target and sums
over `worker`. A worker whose supervisor is gone (SIGKILL) stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from meterflow.settings import Settings
from web.settings import IngestSettings

log = logging.getLogger(__name__)

# How long a scrape waits for workers that have not reported their metrics port yet (it
# answers with them down after that), and for one worker's metrics.
REPORT_WAIT = 10.0
SCRAPE_TIMEOUT = 5.0


class Server(Protocol):
    @property
    def metrics_port(self) -> int: ...


class Run(Protocol):
    """`gateway.service.run`: one ingest app until a signal; `started` once it listens."""

    def __call__(
        self,
        settings: Settings,
        ingest: IngestSettings,
        *,
        metrics_host: str | None = ...,
        started: Callable[[Server], None] | None = ...,
    ) -> None: ...


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_expositions(texts: Sequence[str | None]) -> bytes:
    """One Prometheus exposition of the workers' (None: did not answer), each sample
    labelled with its worker's index, and `ingest_worker_up` per worker."""
    families: dict[str, Metric] = {}
    up = Metric("ingest_worker_up", "1 if the ingest worker answered this scrape", "gauge")
    for index, text in enumerate(texts):
        worker = str(index)
        up.add_sample("ingest_worker_up", {"worker": worker}, 0.0 if text is None else 1.0)
        for family in text_string_to_metric_families(text or ""):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            merged.samples.extend(
                s._replace(labels={**s.labels, "worker": worker}) for s in family.samples
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up]))
    return generate_latest(registry)


def _leave_with_parent(parent: int) -> None:
    """SIGTERM this worker (a graceful stop) once its supervisor is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        log.warning("ingest.supervisor_gone pid=%d", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _worker(
    settings: Settings, ingest: IngestSettings, run: Run, report: Connection, sock: socket.socket
) -> None:
    sock.close()  # the supervisor's metrics listener, inherited by fork
    # Not the supervisor's handlers (inherited by fork): until serve() installs its own, a
    # signal ends the worker at once. Then SIGTERM from the supervisor, or SIGINT from a
    # terminal's Ctrl-C (the whole process group gets it), stops it gracefully.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _leave_with_parent(os.getppid())

    def started(server: Server) -> None:
        report.send(server.metrics_port)
        report.close()

    run(settings, replace(ingest, metrics_port=0), metrics_host="127.0.0.1", started=started)


class _Workers:
    """The worker processes, and the metrics ports they reported."""

    def __init__(self, processes: Sequence[tuple[BaseProcess, Connection]]) -> None:
        self.processes = list(processes)
        self.ports: list[int | None] = [None] * len(processes)
        self.reported = asyncio.Event()

    def listen(self) -> None:
        loop = asyncio.get_running_loop()
        for index, (_, conn) in enumerate(self.processes):
            loop.add_reader(conn.fileno(), self._report, index, conn)

    def _report(self, index: int, conn: Connection) -> None:
        asyncio.get_running_loop().remove_reader(conn.fileno())
        try:
            self.ports[index] = conn.recv()
        except EOFError:  # exited before it listened: the watch sees it
            return
        if None not in self.ports:
            self.reported.set()

    def gone(self) -> BaseProcess | None:
        return next((p for p, _ in self.processes if not p.is_alive()), None)

    async def exposition(self, session: aiohttp.ClientSession) -> bytes:
        if not self.reported.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reported.wait(), REPORT_WAIT)

        async def scraped(port: int | None) -> str | None:
            if port is None:
                return None
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    return await response.text() if response.status == 200 else None
            except (aiohttp.ClientError, TimeoutError):
                return None

        texts = await asyncio.gather(*(scraped(port) for port in self.ports))
        return merge_expositions(texts)


async def _watch(workers: _Workers, sock: socket.socket, stopping: threading.Event) -> bool:
    """Serve the merged metrics until a signal (True) or a worker's exit (False)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if stopping.is_set():  # a signal came before the loop handled them
        stop.set()
    workers.listen()
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def metrics(request: web.Request) -> web.Response:
            body = await workers.exposition(session)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            while not stop.is_set():
                gone = workers.gone()
                if gone is not None:
                    log.error("ingest.worker_exited name=%s exitcode=%s", gone.name, gone.exitcode)
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            return True
        finally:
            await runner.cleanup()


def _metrics_listener(ingest: IngestSettings) -> socket.socket:
    """Bound before the workers start: a scrape meanwhile waits in the backlog."""
    sock = socket.create_server((ingest.host, ingest.metrics_port), reuse_port=False)
    sock.setblocking(False)
    return sock


def supervise(settings: Settings, ingest: IngestSettings, run: Run) -> int:
    """Run `ingest.workers` worker processes (each `run`) until a signal (exit status 0) or
    the first one to exit (1); see the module docstring."""
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    # Before the workers start, so that a signal meanwhile cannot orphan them.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock = _metrics_listener(ingest)
    context = multiprocessing.get_context("fork")  # no loop runs yet to be forked mid-way
    processes = []
    for index in range(ingest.workers):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker, args=(settings, ingest, run, send, sock), name=f"ingest-worker-{index}"
        )
        process.start()
        send.close()
        processes.append((process, receive))
    log.info("ingest.workers_started count=%d metrics_port=%d", len(processes), ingest.metrics_port)
    workers = _Workers(processes)
    try:
        signalled = asyncio.run(_watch(workers, sock, stopping))
    finally:
        signal.signal(signal.SIGTERM, stop)  # asyncio.run restored the defaults
        signal.signal(signal.SIGINT, stop)
        sock.close()
        for process, _ in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each finishes its requests and flushes
        for process, _ in processes:
            process.join(ingest.shutdown_grace + ingest.produce_timeout + 5)
            if process.is_alive():
                process.kill()
                process.join()
    return 0 if signalled else 1
