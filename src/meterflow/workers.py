"""A service's command as several worker processes (METERFLOW_INGEST_WORKERS,
METERFLOW_AGGREGATOR_WORKERS), each a whole instance of the service, with one `/metrics`
for all of them.

The command's own process supervises: it forks the workers while no event loop runs,
passes SIGTERM and SIGINT on to every worker (each stops as it does alone), starts a worker
that exits again in its place, alone, with `meterflow up`'s back-off (`meterflow.restarts`:
the others go on serving; at the fifth exit within a minute it stops them all and exits 1,
and `meterflow up` restarts the service), and serves `/metrics` on the service's metrics
port: every worker's own series, fetched from the worker at each scrape (each listens on a
port of its own on 127.0.0.1 and reports it through a pipe) and labelled `worker="<i>"`,
plus `<prefix>_up{worker}` and `<prefix>_restarts_total{worker}`. Prometheus scrapes that
one target and sums over `worker`. A worker whose supervisor is gone (SIGKILL) stops by
itself.
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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from meterflow.restarts import RestartPolicy, describe_exit

log = logging.getLogger(__name__)

# How long a scrape waits for workers that have not reported their metrics port yet (it
# answers with them down after that), and for one worker's metrics.
REPORT_WAIT = 10.0
SCRAPE_TIMEOUT = 5.0

# One worker's whole life in its process: `work(index, report)` runs worker `index` until a
# signal, calling `report(port)` once its metrics listen on 127.0.0.1:<port>.
Work = Callable[[int, Callable[[int], None]], None]


@dataclass(frozen=True, slots=True)
class Pool:
    """What the supervising process needs to know of the service's workers."""

    service: str  # "ingest": names the processes and the log lines
    count: int
    metrics_host: str
    metrics_port: int
    # Names the per-worker series the merged metrics add: `<prefix>_up` (1 if the worker
    # answered the scrape) and `<prefix>_restarts_total` (times it was started again).
    metric_prefix: str
    stop_timeout: float  # seconds a worker may take to stop after SIGTERM


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_expositions(texts: Sequence[str | None], prefix: str, restarts: Sequence[int]) -> bytes:
    """One Prometheus exposition of the workers' (None: did not answer), each sample
    labelled with its worker's index, plus per worker `<prefix>_up` and
    `<prefix>_restarts_total` (`restarts`, by index)."""
    families: dict[str, Metric] = {}
    up = Metric(f"{prefix}_up", "1 if the worker answered this scrape", "gauge")
    started = Metric(
        f"{prefix}_restarts", "times the worker was started again after it died", "counter"
    )
    for index, text in enumerate(texts):
        worker = str(index)
        up.add_sample(f"{prefix}_up", {"worker": worker}, 0.0 if text is None else 1.0)
        started.add_sample(f"{prefix}_restarts_total", {"worker": worker}, restarts[index])
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
    registry.register(_Families([*families.values(), up, started]))
    return generate_latest(registry)


def _leave_with_parent(parent: int, service: str) -> None:
    """SIGTERM this worker (a graceful stop) once its supervisor is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        log.warning("%s.supervisor_gone pid=%d", service, parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _worker(pool: Pool, index: int, work: Work, report: Connection, sock: socket.socket) -> None:
    sock.close()  # the supervisor's metrics listener, inherited by fork
    # Not the supervisor's handlers (inherited by fork): until the worker installs its own, a
    # signal ends it at once. Then SIGTERM from the supervisor, or SIGINT from a terminal's
    # Ctrl-C (the whole process group gets it), stops it gracefully.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _leave_with_parent(os.getppid(), pool.service)

    def started(port: int) -> None:
        report.send(port)
        report.close()

    work(index, started)


class _Workers:
    """The worker processes, and the metrics ports they reported."""

    def __init__(self, pool: Pool, processes: Sequence[tuple[BaseProcess, Connection]]) -> None:
        self.pool = pool
        self.processes = list(processes)
        self.ports: list[int | None] = [None] * len(processes)
        self.restarts = [0] * len(processes)
        self.reported: asyncio.Event  # made by `listen`, anew in each loop's life

    def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.reported = asyncio.Event()
        if None not in self.ports:
            self.reported.set()
        for index, (_, conn) in enumerate(self.processes):
            if self.ports[index] is None:
                loop.add_reader(conn.fileno(), self._report, index, conn)

    def replace(self, index: int, process: BaseProcess, conn: Connection) -> None:
        """Worker `index` started again: its metrics port is the one it reports next."""
        self.processes[index][1].close()
        self.processes[index] = (process, conn)
        self.ports[index] = None
        self.restarts[index] += 1

    def _report(self, index: int, conn: Connection) -> None:
        asyncio.get_running_loop().remove_reader(conn.fileno())
        try:
            self.ports[index] = conn.recv()
        except EOFError:  # exited before it listened: the watch sees it
            return
        if None not in self.ports:
            self.reported.set()

    def gone(self) -> int | None:
        """The index of a worker that exited, if any."""
        return next((i for i, (p, _) in enumerate(self.processes) if not p.is_alive()), None)

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
        return merge_expositions(texts, self.pool.metric_prefix, self.restarts)


async def _watch(workers: _Workers, sock: socket.socket, stopping: threading.Event) -> int | None:
    """Serve the merged metrics until a signal (None) or a worker's exit (its index)."""
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
        await web.SockSite(runner, sock.dup()).start()  # (closed with the runner)
        try:
            while not stop.is_set():
                gone = workers.gone()
                if gone is not None:
                    # A signal that stopped the worker (a terminal's Ctrl-C reaches every
                    # process of the group) may not have reached the loop's handler yet.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)
                    return None if stop.is_set() else gone
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            return None
        finally:
            await runner.cleanup()


def _start(
    context: multiprocessing.context.ForkContext,
    pool: Pool,
    index: int,
    work: Work,
    sock: socket.socket,
) -> tuple[BaseProcess, Connection]:
    """Fork worker `index` (no event loop may run in this process meanwhile)."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_worker,
        args=(pool, index, work, send, sock),
        name=f"{pool.service}-worker-{index}",
    )
    process.start()
    send.close()
    return process, receive


def supervise(pool: Pool, work: Work) -> int:
    """Run `pool.count` worker processes (each `work`) until a signal (exit status 0), each
    started again when it exits, until one keeps exiting (1); see the module docstring."""
    policy = RestartPolicy()
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    def handle_signals() -> None:
        # Before the workers start, so that a signal meanwhile cannot orphan them; again
        # after each asyncio.run, which restores the defaults.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    handle_signals()
    # Bound before the workers start: a scrape meanwhile waits in the backlog.
    sock = socket.create_server((pool.metrics_host, pool.metrics_port), reuse_port=False)
    sock.setblocking(False)
    context = multiprocessing.get_context("fork")  # no loop runs yet to be forked mid-way
    workers = _Workers(pool, [_start(context, pool, i, work, sock) for i in range(pool.count)])
    log.info(
        "%s.workers_started count=%d metrics_port=%d", pool.service, pool.count, pool.metrics_port
    )
    exits: list[list[float]] = [[] for _ in range(pool.count)]
    status = 0
    try:
        while (gone := asyncio.run(_watch(workers, sock, stopping))) is not None:
            handle_signals()
            process = workers.processes[gone][0]
            exits[gone].append(time.monotonic())
            recent = policy.recent(exits[gone], time.monotonic())
            how = describe_exit(process.exitcode or 0)
            if process.exitcode == 0:
                # A worker stops by itself only when told to: stop the others too.
                log.error("%s.worker_stopped name=%s: %s", pool.service, process.name, how)
                status = 1
                break
            if policy.gives_up(recent):
                log.error(
                    "%s.worker_failing name=%s: %s, %d times within %.0f s; stopping the "
                    "others (see the worker's log lines above for why)",
                    pool.service,
                    process.name,
                    how,
                    recent,
                    policy.window,
                )
                status = 1
                break
            delay = policy.delay(recent)
            log.error(
                "%s.worker_exited name=%s: %s; starting it again in %.0f s",
                pool.service,
                process.name,
                how,
                delay,
            )
            if stopping.wait(delay):
                break
            workers.replace(gone, *_start(context, pool, gone, work, sock))
    finally:
        handle_signals()
        sock.close()
        for process, _ in workers.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each stops as it does alone
        for process, _ in workers.processes:
            process.join(pool.stop_timeout)
            if process.is_alive():
                process.kill()
                process.join()
    return status
