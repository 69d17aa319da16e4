"""`meterflow aggregator`: run one aggregator worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import start_http_server

from aggregator.app import create_app
from aggregator.settings import AggregatorSettings
from meterflow.settings import Settings
from meterflow.topics import ensure_topics

log = logging.getLogger(__name__)


def main(settings: Settings, agg: AggregatorSettings | None = None) -> int:
    """Create the topics if missing, serve metrics, and run the Faust worker.

    SIGTERM stops consuming, commits what was processed and flushes the producer (Faust's
    worker shutdown); SIGKILL loses nothing either (see `aggregator.app`).
    """
    agg = agg or AggregatorSettings.from_env()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    )
    app, aggregator = create_app(settings, agg)
    aggregator.metrics.ready.set_function(lambda: float(aggregator.ready()))
    server, _ = start_http_server(
        agg.metrics_port, addr=agg.host, registry=aggregator.metrics.registry
    )
    log.info(
        "aggregator.starting app_id=%s web=http://%s:%d metrics=http://%s:%d/metrics",
        agg.app_id,
        agg.host,
        agg.port,
        agg.host,
        agg.metrics_port,
    )
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=logging.getLevelName(logging.getLogger().level),
        redirect_stdouts=False,
        quiet=True,
        override_logging=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        server.shutdown()
    return 0
