"""The metrics of several ingest workers served as one exposition, each series labelled with
its worker, a worker that did not answer reported down, and each one's restarts counted."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meterflow.workers import merge_expositions
from web.metrics import IngestMetrics


def _worker(accepted: int, latency: float) -> str:
    metrics = IngestMetrics()
    metrics.events_accepted.inc(accepted)
    metrics.events_rejected.labels("value_is_invalid").inc()
    metrics.request_latency.labels("POST", "/api/v1/events/batch", "200").observe(latency)
    return generate_latest(metrics.registry).decode()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_worker_s_series_keep_their_values_under_a_worker_label() -> None:
    texts = [_worker(120, 0.004), None, _worker(80, 0.2)]
    merged = merge_expositions(texts, "ingest_worker", [0, 3, 0]).decode()
    samples = _samples(merged)
    assert samples[("ingest_events_accepted_total", frozenset({("worker", "0")}))] == 120
    assert samples[("ingest_events_accepted_total", frozenset({("worker", "2")}))] == 80
    silent = [name for name, labels in samples if ("worker", "1") in labels]
    assert silent == ["ingest_worker_up", "ingest_worker_restarts_total"]
    rejected = frozenset({("reason", "value_is_invalid"), ("worker", "2")})
    assert samples[("ingest_events_rejected_total", rejected)] == 1
    bucket = frozenset(
        {
            ("method", "POST"),
            ("route", "/api/v1/events/batch"),
            ("status", "200"),
            ("le", "0.005"),
            ("worker", "0"),
        }
    )
    assert samples[("ingest_request_seconds_bucket", bucket)] == 1
    slow = (bucket - {("worker", "0")}) | {("worker", "2")}
    assert samples[("ingest_request_seconds_bucket", slow)] == 0
    up = {w: samples[("ingest_worker_up", frozenset({("worker", w)}))] for w in "012"}
    assert up == {"0": 1, "1": 0, "2": 1}
    restarts = {
        w: samples[("ingest_worker_restarts_total", frozenset({("worker", w)}))] for w in "012"
    }
    assert restarts == {"0": 0, "1": 3, "2": 0}
    # One HELP and TYPE per metric, not one per worker: Prometheus refuses repeated families.
    assert merged.count("# TYPE ingest_events_accepted_total counter") == 1
    assert merged.count("# TYPE ingest_request_seconds histogram") == 1


def test_no_worker_answering_still_gives_a_valid_exposition() -> None:
    samples = _samples(merge_expositions([None, None], "ingest_worker", [0, 0]).decode())
    assert samples == {
        ("ingest_worker_up", frozenset({("worker", "0")})): 0,
        ("ingest_worker_up", frozenset({("worker", "1")})): 0,
        ("ingest_worker_restarts_total", frozenset({("worker", "0")})): 0,
        ("ingest_worker_restarts_total", frozenset({("worker", "1")})): 0,
    }
