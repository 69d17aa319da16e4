"""The long-running services `meterflow up` starts and supervises, and where each answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a running service can be reached, and the URL that answers 200 once it is ready."""

    description: str
    ready_url: str


def _ingest_endpoints() -> Endpoints:
    from web.settings import IngestSettings

    s = IngestSettings.from_env()
    metrics = f"http://127.0.0.1:{s.metrics_port}/metrics"
    return Endpoints(f"Lago API http://127.0.0.1:{s.port}  metrics {metrics}", metrics)


def _aggregator_endpoints() -> Endpoints:
    from aggregator.settings import AggregatorSettings

    s = AggregatorSettings.from_env()
    usage = f"http://{s.host}:{s.port}"
    metrics = f"http://127.0.0.1:{s.metrics_port}/metrics"
    return Endpoints(f"usage {usage}  metrics {metrics}", f"{usage}/ready")


def _invoicer_endpoints() -> Endpoints:
    from invoicer.settings import InvoicerSettings

    s = InvoicerSettings.from_env()
    metrics = f"http://127.0.0.1:{s.metrics_port}/metrics"
    return Endpoints(f"metrics {metrics}", metrics)


def _exporter_endpoints() -> Endpoints:
    from operations.exporter import ExporterSettings

    s = ExporterSettings.from_env()
    metrics = f"http://127.0.0.1:{s.port}/metrics"
    return Endpoints(f"consumer lag metrics {metrics}", metrics)


def _webhooks_endpoints() -> Endpoints:
    from webhooks.settings import WebhookSettings

    metrics = f"http://127.0.0.1:{WebhookSettings.from_env().metrics_port}/metrics"
    return Endpoints(f"metrics {metrics}", metrics)


@dataclass(frozen=True, slots=True)
class Service:
    """A long-running meterflow process that `meterflow up` starts as `meterflow <name>`."""

    name: str
    entry_point: str  # "module:function", imported only when the service runs
    endpoints: Callable[[], Endpoints]  # from the service's own settings


SERVICES: tuple[Service, ...] = (
    Service("ingest", "gateway.service:main", _ingest_endpoints),
    Service("aggregator", "aggregator.service:main", _aggregator_endpoints),
    Service("invoicer", "invoicer.service:main", _invoicer_endpoints),
    Service("exporter", "operations.exporter:main", _exporter_endpoints),
    Service("webhooks", "webhooks.service:main", _webhooks_endpoints),
)
