"""`meterflow ingest`: run the API and its metrics until SIGTERM or SIGINT, then stop
accepting connections, finish the requests in flight, flush the producer and close the pool.

With METERFLOW_INGEST_WORKERS > 1 the command supervises that many worker processes, each a
whole ingest app (its own producer, pool and outbox loop) listening on the same port with
SO_REUSEPORT; a signal is passed on to every worker, and if one dies the others are stopped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import threading
from dataclasses import replace
from typing import Any

import uvloop
from aiohttp import web

from gateway.app import create_app, create_metrics_app
from meterflow.settings import Settings
from web.settings import IngestSettings

log = logging.getLogger(__name__)

GC_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server  # aiohttp exposes the bound socket only here
    port: int = server.sockets[0].getsockname()[1]
    return port


class IngestServer:
    """The API app and its metrics app, each on its own TCP site (port 0: any free port)."""

    def __init__(self, settings: Settings, ingest: IngestSettings):
        self.ingest = ingest
        self.app = create_app(settings, ingest)
        self._api = web.AppRunner(self.app, access_log=None, shutdown_timeout=ingest.shutdown_grace)
        self._metrics = web.AppRunner(create_metrics_app(self.app), access_log=None)
        self.port = 0
        self.metrics_port = 0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.ingest.host in ("0.0.0.0", "") else self.ingest.host
        return f"http://{host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        host = "127.0.0.1" if self.ingest.host in ("0.0.0.0", "") else self.ingest.host
        return f"http://{host}:{self.metrics_port}/metrics"

    async def start(self) -> None:
        await self._api.setup()
        await self._metrics.setup()
        api_site = web.TCPSite(
            self._api, self.ingest.host, self.ingest.port, reuse_port=self.ingest.workers > 1
        )
        await api_site.start()
        metrics_site = web.TCPSite(self._metrics, self.ingest.host, self.ingest.metrics_port)
        await metrics_site.start()
        self.port, self.metrics_port = _bound_port(api_site), _bound_port(metrics_site)
        log.info("ingest.listening url=%s metrics=%s", self.url, self.metrics_url)

    async def stop(self) -> None:
        """Close the listeners, wait for in-flight requests, then the app's cleanup runs."""
        await self._api.cleanup()
        await self._metrics.cleanup()

    async def __aenter__(self) -> IngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _tune_gc() -> None:
    """A batch request allocates some thousand short-lived dicts and lists (the parsed JSON,
    records, the answer), which refcounting frees; the default thresholds ran a collection
    every few hundred of them, and full ones walked every module object too. Collect less
    often, and leave what startup built (modules, the app) out of collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


async def serve(settings: Settings, ingest: IngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = IngestServer(settings, ingest)
    await server.start()
    _tune_gc()
    try:
        await stop.wait()
        log.info("ingest.stopping reason=signal")
    finally:
        await server.stop()


def _run(settings: Settings, ingest: IngestSettings) -> None:
    """serve() on uvloop's event loop: libuv's sockets and loop cost the ingest hot path
    (HTTP in, Kafka out, a few thousand writes a second) less than asyncio's own."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, ingest))


def _worker(settings: Settings, ingest: IngestSettings) -> None:
    # Not the supervisor's handlers (inherited by fork): until serve() installs its own, a
    # signal ends the worker at once. Then SIGTERM from the supervisor, or SIGINT from a
    # terminal's Ctrl-C (the whole process group gets it), stops it gracefully.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _run(settings, ingest)


def _supervise(settings: Settings, ingest: IngestSettings) -> int:
    """Run `ingest.workers` worker processes until a signal or the first one to exit."""
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    # Before the workers start, so that a signal meanwhile cannot orphan them.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    context = multiprocessing.get_context("fork")  # nothing runs yet to be forked mid-way
    workers = []
    for index in range(ingest.workers):
        metrics_port = ingest.metrics_port + index if ingest.metrics_port else 0
        worker = context.Process(
            target=_worker,
            args=(settings, replace(ingest, metrics_port=metrics_port)),
            name=f"ingest-worker-{index}",
        )
        worker.start()
        workers.append(worker)
    log.info("ingest.workers_started count=%d", len(workers))
    while not stopping.wait(0.5):
        gone = [w for w in workers if not w.is_alive()]
        if gone:
            log.error("ingest.worker_exited name=%s exitcode=%s", gone[0].name, gone[0].exitcode)
            break
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: each finishes its requests and flushes
    for worker in workers:
        worker.join(ingest.shutdown_grace + ingest.produce_timeout + 5)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return 0 if stopping.is_set() else 1


def main(settings: Settings) -> int:
    ingest = IngestSettings.from_env()
    if ingest.workers > 1:
        return _supervise(settings, ingest)
    _run(settings, ingest)
    return 0
