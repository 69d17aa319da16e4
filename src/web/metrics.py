"""Prometheus metrics of one ingest app, in its own registry (several apps can share a
process, as they do in tests) and served on their own port."""

from __future__ import annotations

from meterflow.service_metrics import ServiceMetrics, counter, histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100)


class IngestMetrics(ServiceMetrics):
    events_accepted = counter(
        "ingest_events_accepted", "Events acknowledged by Kafka and answered 200"
    )
    events_rejected = counter(
        "ingest_events_rejected",
        "Events refused, by reason (the error code, or broker_unavailable)",
        ["reason"],
    )
    batch_size = histogram("ingest_batch_size", "Events per batch request", buckets=_BATCH_BUCKETS)
    request_latency = histogram(
        "ingest_request_seconds",
        "HTTP request latency by route and status",
        ["method", "route", "status"],
        buckets=_LATENCY_BUCKETS,
    )
    produce_latency = histogram(
        "ingest_kafka_produce_seconds",
        "Time from queueing records to the broker's acknowledgement of all of them",
        buckets=_LATENCY_BUCKETS,
    )
    produce_failures = counter("ingest_kafka_produce_failures", "Sends not acknowledged in time")
    catalog_published = counter(
        "ingest_catalog_records_published", "Catalog records sent from the outbox"
    )
