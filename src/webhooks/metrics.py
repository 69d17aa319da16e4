"""Prometheus metrics of one webhook worker, in its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from meterflow.service_metrics import ServiceMetrics


class WebhookMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.attempts = self.counter(
            "webhooks_attempts",
            "Delivery attempts, by outcome (succeeded, retrying, failed)",
            ["outcome"],
            zero=("succeeded", "retrying", "failed"),
        )
        self.latency = self.histogram(
            "webhooks_delivery_seconds", "Seconds a receiver took to answer"
        )
        self.commit_to_delivery = self.histogram(
            "webhooks_commit_to_delivery_seconds",
            "Seconds from the change's commit to its webhook's successful delivery",
            buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 3600, 86400),
        )
