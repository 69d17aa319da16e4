"""The long-running services `meterflow up` starts and supervises, and where each answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a running service can be reached, and the URL that answers 200 once it is ready."""

    description: str
    ready_url: str


def _metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


def _metrics_only(port: int, label: str = "metrics") -> Endpoints:
    """A service that answers only with its metrics, ready once they do."""
    metrics = _metrics_url(port)
    return Endpoints(f"{label} {metrics}", metrics)


def _ingest_endpoints() -> Endpoints:
    from web.settings import IngestSettings

    s = IngestSettings.from_env()
    metrics = _metrics_url(s.metrics_port)
    processes = f"  ({s.workers} processes)" if s.workers > 1 else ""
    return Endpoints(f"Lago API http://127.0.0.1:{s.port}  metrics {metrics}{processes}", metrics)


def _aggregator_endpoints() -> Endpoints:
    from aggregator.settings import AggregatorSettings

    s = AggregatorSettings.from_env()
    usage = f"http://{s.host}:{s.port}"
    last = s.port + s.workers - 1
    workers = f"  ({s.workers} workers, usage on ports {s.port}-{last})" if s.workers > 1 else ""
    metrics = _metrics_url(s.metrics_port)
    return Endpoints(f"usage {usage}  metrics {metrics}{workers}", f"{usage}/ready")


def _invoicer_endpoints() -> Endpoints:
    from invoicer.settings import InvoicerSettings

    return _metrics_only(InvoicerSettings.from_env().metrics_port)


def _exporter_endpoints() -> Endpoints:
    from operations.exporter import ExporterSettings

    return _metrics_only(ExporterSettings.from_env().port, "consumer lag metrics")


def _webhooks_endpoints() -> Endpoints:
    from webhooks.settings import WebhookSettings

    return _metrics_only(WebhookSettings.from_env().metrics_port)


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
