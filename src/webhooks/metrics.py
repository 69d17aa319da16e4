"""Prometheus metrics of one webhook worker, in its own registry."""

from __future__ import annotations

from meterflow.service_metrics import ServiceMetrics, counter, histogram


class WebhookMetrics(ServiceMetrics):
    attempts = counter(
        "webhooks_attempts",
        "Delivery attempts, by outcome (succeeded, retrying, failed)",
        ["outcome"],
        zero=("succeeded", "retrying", "failed"),
    )
    latency = histogram("webhooks_delivery_seconds", "Seconds a receiver took to answer")
    commit_to_delivery = histogram(
        "webhooks_commit_to_delivery_seconds",
        "Seconds from the change's commit to its webhook's successful delivery",
        buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 3600, 86400),
    )
    alert_checks = counter(
        "alerts_checks",
        "Alert checks against the aggregator's current usage, by outcome (checked: one per "
        "alert; unavailable: one per subscription the aggregator did not answer for)",
        ["outcome"],
        zero=("checked", "unavailable"),
    )
    alerts_triggered = counter("alerts_triggered", "Alerts whose thresholds were crossed")
