"""`meterflow exporter`: Prometheus metrics about the deployment rather than one process:
consumer lag per group and partition (offsets and seconds), and the dead-letter topic's size.
Kafka is asked every METERFLOW_EXPORTER_INTERVAL seconds, not on each scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meterflow.settings import Settings, setting, settings_from_env
from operations.kafka_reading import partitions_of, reader
from operations.lag import PartitionLag, consumer_lag

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExporterSettings:
    host: str = setting("METERFLOW_EXPORTER_HOST", "0.0.0.0")
    port: int = setting("METERFLOW_EXPORTER_PORT", 9105)
    interval: float = setting("METERFLOW_EXPORTER_INTERVAL", 5.0, minimum=0.5)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExporterSettings:
        return settings_from_env(cls, env)


@dataclass
class Snapshot:
    """What the last look at Kafka found."""

    at: datetime
    lags: list[PartitionLag]
    dead_letters: int


class DeploymentCollector(Collector):
    """Turns the latest snapshot into gauges at scrape time."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.failures = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "meterflow_consumer_lag_messages",
            "Records of the partition the group has not committed yet",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            "meterflow_consumer_lag_seconds",
            "Seconds the oldest record the group has not applied has waited (0: caught up)",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "meterflow_consumer_newest_applied_age_seconds",
            "Seconds since the newest record the group applied was accepted",
            labels=labels,
        )
        dead = GaugeMetricFamily(
            "meterflow_dead_letter_topic_messages", "Records in the dead-letter topic"
        )
        failed = GaugeMetricFamily(
            "meterflow_exporter_kafka_failures",
            "Consecutive failed looks at Kafka (the figures above are then stale)",
        )
        failed.add_metric([], self.failures)
        snap = self.snapshot
        if snap is not None:
            now = datetime.now(UTC)
            for row in snap.lags:
                key = [row.group, row.topic, str(row.partition)]
                lag.add_metric(key, row.lag)
                seconds.add_metric(key, row.waiting_seconds(now))
                applied_age = row.applied_age(now)
                if applied_age is not None:
                    age.add_metric(key, applied_age)
            dead.add_metric([], snap.dead_letters)
        yield from (lag, seconds, age, dead, failed)


async def dead_letter_count(settings: Settings) -> int:
    async with reader(settings.bootstrap_servers) as consumer:
        tps = await partitions_of(consumer, settings.topics.dead_letter)
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)


async def refresh(settings: Settings, collector: DeploymentCollector) -> None:
    try:
        lags = await consumer_lag(settings.bootstrap_servers, settings.topics)
        dead = await dead_letter_count(settings)
    except Exception as exc:  # a broker hiccup must not end the exporter
        collector.failures += 1
        log.warning("exporter.kafka_failed failures=%d error=%r", collector.failures, exc)
        return
    collector.failures = 0
    collector.snapshot = Snapshot(datetime.now(UTC), lags, dead)


async def serve(settings: Settings, config: ExporterSettings) -> None:
    collector = DeploymentCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await refresh(settings, collector)
    await web.TCPSite(runner, config.host, config.port).start()
    log.info("exporter.started metrics=http://%s:%d/metrics", config.host, config.port)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), config.interval)
            if not stop.is_set():
                await refresh(settings, collector)
    finally:
        await runner.cleanup()
        log.info("exporter.stopped reason=signal")


def main(settings: Settings) -> int:
    asyncio.run(serve(settings, ExporterSettings.from_env()))
    return 0
