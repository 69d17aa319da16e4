"""Every expression of the alert rules and of the Grafana dashboard names only metrics the
services export, and promtool accepts the rules and the scrape config."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry

from aggregator.metrics import AggregatorMetrics
from invoicer.metrics import InvoicerMetrics
from operations.exporter import DeploymentCollector
from support.deploy_config import DEPLOY, metric_names, rule_expressions, used_names
from web.metrics import IngestMetrics
from webhooks.metrics import WebhookMetrics

# Series Prometheus makes itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exported_names() -> set[str]:
    """Sample names of every metric family the services and the exporter register."""
    collector_registry = CollectorRegistry()
    collector_registry.register(DeploymentCollector())
    registries = [
        IngestMetrics().registry,
        AggregatorMetrics().registry,
        InvoicerMetrics().registry,
        WebhookMetrics().registry,
        collector_registry,
    ]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}_{part}" for part in ("bucket", "count", "sum"))
            else:
                names.add(family.name)
    return names


def test_the_name_extraction_skips_functions_labels_and_durations() -> None:
    expr = 'sum by (le, route) (rate(a_seconds_bucket{job=~"x.*"}[5m])) / on (x) b_total > 1'
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    unknown = used_names() - exported_names() - SYNTHETIC
    assert not unknown, f"not exported by any service: {sorted(unknown)}"
    assert len(used_names()) >= 12, "the dashboard covers rate, lag, freshness, money..."


def test_the_issue_s_alerts_are_all_there() -> None:
    text = " ".join(rule_expressions())
    for needed in (
        "meterflow_consumer_lag_messages",  # lag growing
        "meterflow_aggregator_freshness_seconds_bucket",  # freshness p99
        "meterflow_aggregator_dead_letters_total",  # dead letters rising
        "up{",  # a service not ready
        "meterflow_aggregator_ready",
        "invoicer_failures_total",  # invoicer failing
        "invoicer_messages_done_total",  # no invoice after a period end
    ):
        assert needed in text, needed


def test_promtool_accepts_the_rules_and_the_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    for args in (
        ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
