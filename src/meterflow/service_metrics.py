"""The base of a service's Prometheus metrics: a registry of their own, metrics declared on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


class Declared(Generic[_Metric]):
    """A metric declared in a `ServiceMetrics` class body: each instance makes its own on its
    registry when it starts, under the attribute's name."""

    def __init__(self, make: Callable[[CollectorRegistry], _Metric]) -> None:
        self.make: Callable[[CollectorRegistry], _Metric] = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, metrics: None, owner: type) -> Declared[_Metric]: ...
    @overload
    def __get__(self, metrics: ServiceMetrics, owner: type) -> _Metric: ...
    def __get__(self, metrics: ServiceMetrics | None, owner: type) -> Any:
        # Reached only through the class: each instance holds its own metric.
        return self if metrics is None else metrics.__dict__[self.name]


def counter(
    name: str, documentation: str, labels: Sequence[str] = (), *, zero: Iterable[str] = ()
) -> Declared[Counter]:
    """A counter; each of `zero` (values of its one label) is exported at 0 from the start,
    so that rates and alerts see it before it first happens."""

    def make(registry: CollectorRegistry) -> Counter:
        metric = Counter(name, documentation, labels, registry=registry)
        for value in zero:
            metric.labels(value)
        return metric

    return Declared(make)


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
) -> Declared[Histogram]:
    return Declared(
        lambda registry: Histogram(name, documentation, labels, buckets=buckets, registry=registry)
    )


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Declared[Gauge]:
    return Declared(lambda registry: Gauge(name, documentation, labels, registry=registry))


class ServiceMetrics:
    """One service's metrics on a registry of their own, so that several services (and
    several apps in one test process) never share or clash over a metric. Subclasses declare
    theirs in the class body (`attempts = counter(...)`, made when an instance starts) or in
    `__init__` with the methods `counter`, `histogram` and `gauge`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        for cls in reversed(type(self).__mro__):
            for name, value in vars(cls).items():
                if isinstance(value, Declared):
                    self.__dict__[name] = value.make(self.registry)

    def counter(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        zero: Iterable[str] = (),
    ) -> Counter:
        return counter(name, documentation, labels, zero=zero).make(self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return histogram(name, documentation, labels, buckets=buckets).make(self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return gauge(name, documentation, labels).make(self.registry)
