"""Prometheus metrics of one ingest app, in its own registry (several apps can share a
process, as they do in tests) and served on their own port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from meterflow.service_metrics import ServiceMetrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100)


class IngestMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.events_accepted = self.counter(
            "ingest_events_accepted", "Events acknowledged by Kafka and answered 200"
        )
        self.events_rejected = self.counter(
            "ingest_events_rejected",
            "Events refused, by reason (the error code, or broker_unavailable)",
            ["reason"],
        )
        self.batch_size = self.histogram(
            "ingest_batch_size", "Events per batch request", buckets=_BATCH_BUCKETS
        )
        self.request_latency = self.histogram(
            "ingest_request_seconds",
            "HTTP request latency by route and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
        )
        self.produce_latency = self.histogram(
            "ingest_kafka_produce_seconds",
            "Time from queueing records to the broker's acknowledgement of all of them",
            buckets=_LATENCY_BUCKETS,
        )
        self.produce_failures = self.counter(
            "ingest_kafka_produce_failures", "Sends not acknowledged in time"
        )
        self.catalog_published = self.counter(
            "ingest_catalog_records_published", "Catalog records sent from the outbox"
        )
