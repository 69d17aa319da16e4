"""Prometheus metrics of one webhook worker, in its own registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class WebhookMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.attempts = Counter(
            "webhooks_attempts",
            "Delivery attempts, by outcome (succeeded, retrying, failed)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("succeeded", "retrying", "failed"):
            self.attempts.labels(outcome)  # at 0 from the start, so rates and alerts see them
        self.latency = Histogram(
            "webhooks_delivery_seconds", "Seconds a receiver took to answer", registry=r
        )
        self.commit_to_delivery = Histogram(
            "webhooks_commit_to_delivery_seconds",
            "Seconds from the change's commit to its webhook's successful delivery",
            buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 3600, 86400),
            registry=r,
        )
