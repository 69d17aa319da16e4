"""The base of a service's Prometheus metrics: a registry of their own, metrics declared on it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """One service's metrics on a registry of their own, so that several services (and
    several apps in one test process) never share or clash over a metric; subclasses declare
    theirs in `__init__` with `counter`, `histogram` and `gauge`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry

    def counter(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        zero: Iterable[str] = (),
    ) -> Counter:
        """A counter; each of `zero` (values of its one label) is exported at 0 from the
        start, so that rates and alerts see it before it first happens."""
        metric = Counter(name, documentation, labels, registry=self.registry)
        for value in zero:
            metric.labels(value)
        return metric

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)
