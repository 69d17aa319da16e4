"""`meterflow aggregator`: run one aggregator worker until SIGTERM or SIGINT, or with
METERFLOW_AGGREGATOR_WORKERS > 1 that many worker processes of one app, which share the
events partitions (`meterflow.workers`)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import faust
from prometheus_client import start_http_server

from aggregator.allocator import limit_arenas
from aggregator.app import create_app
from aggregator.settings import AggregatorSettings
from meterflow import workers
from meterflow.settings import Settings
from meterflow.topics import ensure_topics

log = logging.getLogger(__name__)

# The cyclic garbage collector's thresholds for the worker (Python's default: 700, 10, 10).
# A batch allocates a few objects per event (decoded events, their properties, queued
# values), none of them in cycles, and the default made the collector run every few hundred
# events, each full pass walking all of Faust's and the tables' objects: about a third of
# the fold's time. Cycles still get collected, after 50,000 allocations instead of 700.
# A middle generation collected every 4 young ones, not 20 (issue 15): it walks what
# survived them, up to a million objects while a worker opens a million keys (0.2 to 0.5 s
# of CPU each at 20); each object is walked there once either way, in pauses a fifth as
# long. Full collections stay as rare (100 x 4 = 400 young ones, as 20 x 20 before).
GC_THRESHOLDS = (50_000, 4, 100)

# Seconds a worker of several may take to stop after SIGTERM (commit, flush, close the
# stores) before its supervisor kills it.
STOP_TIMEOUT = 60.0


def main(settings: Settings) -> int:
    agg = AggregatorSettings.from_env()
    if agg.workers == 1:
        return run(settings, agg)

    def work(index: int, report: Callable[[int], None]) -> None:
        raise SystemExit(run(settings, agg.worker(index), metrics_host="127.0.0.1", started=report))

    pool = workers.Pool(
        service="aggregator",
        count=agg.workers,
        metrics_host=agg.host,
        metrics_port=agg.metrics_port,
        metric_prefix="meterflow_aggregator_worker",
        stop_timeout=STOP_TIMEOUT,
    )
    return workers.supervise(pool, work)


def run(
    settings: Settings,
    agg: AggregatorSettings,
    *,
    metrics_host: str | None = None,
    started: Callable[[int], None] | None = None,
) -> int:
    """Create the topics if missing, serve metrics (on `metrics_host`, by default where the
    web view listens; `started` is told their port), and run the Faust worker.

    SIGTERM stops consuming, commits what was processed and flushes the producer (Faust's
    worker shutdown); SIGKILL loses nothing either (see `aggregator.app`).
    """
    limit_arenas()  # before Faust, Kafka and RocksDB start their threads
    gc.set_threshold(*GC_THRESHOLDS)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    )
    app, aggregator = create_app(settings, agg)
    aggregator.metrics.ready.set_function(lambda: float(aggregator.ready()))
    aggregator.metrics.watch_gc(diagnose=agg.loop_sample_every > 0)
    metrics_host = agg.host if metrics_host is None else metrics_host
    server, _ = start_http_server(
        agg.metrics_port, addr=metrics_host, registry=aggregator.metrics.registry
    )
    metrics_port = server.server_port
    log.info(
        "aggregator.starting app_id=%s web=http://%s:%d metrics=http://%s:%d/metrics",
        agg.app_id,
        agg.host,
        agg.port,
        metrics_host,
        metrics_port,
    )
    if started is not None:
        started(metrics_port)
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=logging.getLevelName(logging.getLogger().level),
        redirect_stdouts=False,
        quiet=True,
        override_logging=False,
    )
    # What the imports and the app's wiring made lives as long as the process: out of the
    # cyclic collector's sight, so the gc.collect() Faust's RocksDB stores run at a worker's
    # assignment (one per table) walks only what came after (at a restart those three
    # took 0.3 to 0.5 s each, the loop's longest stalls; aggregator.gc_pause).
    gc.collect()
    gc.freeze()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        server.shutdown()
    return 0
