"""The aggregator's Prometheus metrics, on a registry of their own (one per app)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aggregator.loop_sampler import LoopSampler
from meterflow.service_metrics import ServiceMetrics

log = logging.getLogger(__name__)
# A cyclic garbage collection this long is logged (aggregator.gc_pause) as well as counted.
GC_PAUSE_LOGGED = 0.05
# A wake-up of the loop's watcher after this much of the loop's own CPU is logged
# (aggregator.loop_busy), with what the loop sampler saw meanwhile when it runs.
LOOP_BUSY_LOGGED = 0.1


def collect_young() -> None:
    """Collect the youngest generation now, between two slices of work.

    Python collects it once allocations outnumber deallocations by a threshold (50,000
    here), counting every object freed, an old one too. A slice that replaces old objects by
    new ones (the closer pops a subscription's frozen schedule entry and pushes its next)
    leaves the young generation growing with nothing counted, until one collection walks it
    all: a million schedule entries replaced cost one collection of 86 ms of CPU
    in-process, and a worker applying first events at 500,000 subscriptions logged one of
    215 ms (`aggregator.gc_pause generation=0`, issue 15). Collected every slice, it holds
    one slice's survivors: about 0.1 ms."""
    gc.collect(0)


def largest_containers(generation: int, top: int = 5) -> str:
    """What the collector tracks in the generation after `generation` (where a collection of
    it moved its survivors): how many objects, the commonest types, and the largest lists,
    dicts, sets and tuples by length."""
    objects = gc.get_objects(min(generation + 1, 2))
    kinds = Counter(type(o).__name__ for o in objects)
    found = [
        (len(o), type(o).__name__, _first_key(o))
        for o in objects
        if isinstance(o, list | dict | set | tuple)
    ]
    found.sort(key=lambda item: item[0], reverse=True)
    return (
        f"objects={len(objects)} types="
        + ",".join(f"{kind}:{n}" for kind, n in kinds.most_common(top))
        + " largest="
        + " | ".join(f"{kind}[{n}] {sample}" for n, kind, sample in found[:top])
    )


def _first_key(container: list[Any] | dict[Any, Any] | set[Any] | tuple[Any, ...]) -> str:
    """A hint of what a container holds: its first item (a dict's first key), shortened."""
    for item in container:
        return repr(item)[:80]
    return ""


class PeakHistogram:
    """A histogram of seconds (`<name>_seconds`) and a gauge of the largest value it has
    observed since the worker started (`<name>_max_seconds`)."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self, metrics: ServiceMetrics, name: str, documentation: str, peak: str) -> None:
        self.histogram = metrics.histogram(f"{name}_seconds", documentation, buckets=self.BUCKETS)
        self.peak = metrics.gauge(f"{name}_max_seconds", peak)
        self._peak = 0.0

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)
        if seconds > self._peak:
            self._peak = seconds
            self.peak.set(seconds)


class AggregatorMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.events = self.counter(
            "meterflow_aggregator_events_total",
            "Events by outcome: applied, late, held, released, duplicate, replayed, dead_letter",
            ["outcome"],
        )
        self.duplicates = self.counter(
            "meterflow_aggregator_duplicates_total",
            "Events dropped as duplicates of an already counted transaction_id",
        )
        self.late = self.counter(
            "meterflow_aggregator_late_events_total",
            "Events for an already closed period, kept as an adjustment for the next close",
        )
        self.dead_letters = self.counter(
            "meterflow_aggregator_dead_letters_total",
            "Events sent to the dead-letter topic, by reason",
            ["reason"],
        )
        self.batch_size = self.histogram(
            "meterflow_aggregator_batch_size",
            "Events per processed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        self.periods_closed = self.counter(
            "meterflow_aggregator_periods_closed_total",
            "Billing periods closed and emitted to periods-closed",
        )
        self.watermark_lag = self.gauge(
            "meterflow_aggregator_watermark_lag_seconds",
            "How far each owned events partition's watermark trails the last question to the "
            "broker (0 when caught up): periods close once it passes their end",
            ["partition"],
        )
        self.usage_failures = self.counter(
            "meterflow_aggregator_usage_failures_total",
            "Current-usage requests that failed inside the aggregator (a bug: see the "
            "aggregator.usage_failed log line for the subscription and the charge)",
        )
        self.usage_unavailable = self.counter(
            "meterflow_aggregator_usage_unavailable_total",
            "Current-usage requests answered 503 because the worker that owns the "
            "subscription's partition could not be reached (down, until the group hands its "
            "partitions to the others: aggregator.owner_unreachable)",
        )
        self.table_keys = self.gauge(
            "meterflow_aggregator_table_keys", "Keys held in each table on this worker", ["table"]
        )
        self.catalog_subscriptions = self.gauge(
            "meterflow_aggregator_catalog_subscriptions",
            "Subscriptions in this worker's catalog view: those of the events partitions it owns",
        )
        self.catalog_read_seconds = self.gauge(
            "meterflow_aggregator_catalog_read_seconds",
            "How long the last read of the catalog topic from its beginning took (at start, "
            "and at each change of the worker's partitions), until the worker was ready again",
        )

        self.freshness = self.histogram(
            "meterflow_aggregator_freshness_seconds",
            "Seconds from an event's acceptance (its record's timestamp) to its batch being "
            "applied, visible in current usage",
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
        )
        self.loop_stall = PeakHistogram(
            self,
            "meterflow_aggregator_loop_stall",
            "How much later than asked a 20 ms timer on the worker's event loop woke up: "
            "the time something held the loop (a batch, a tick of the closer, recovery)",
            "The longest event-loop stall since the worker started",
        )
        self.loop_busy = PeakHistogram(
            self,
            "meterflow_aggregator_loop_busy",
            "The part of a stall the worker's own code caused: the event loop thread's CPU "
            "time between two wake-ups of that timer, at most the stall",
            "The longest stall the worker's own code caused since start",
        )
        self.gc_pause = PeakHistogram(
            self,
            "meterflow_aggregator_gc_pause",
            "Seconds each cyclic garbage collection held the worker (all its threads)",
            "The longest garbage collection since the worker started",
        )
        self.ready = self.gauge(
            "meterflow_aggregator_ready",
            "1 while the worker answers current usage (catalog read, partitions owned)",
        )

    def watch_gc(self, diagnose: bool = False) -> None:
        """Time Python's cyclic garbage collections (a full one walks every object not
        frozen: at a million subscriptions' worth of state, the loop's longest stalls). With
        `diagnose`, a collection over 100 ms also logs the largest containers it left in the
        generation its survivors moved to (`aggregator.gc_largest`): what it had to walk."""
        started: list[float] = []

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[:] = [time.perf_counter(), time.thread_time()]
            elif started:
                seconds = time.perf_counter() - started[0]
                cpu = time.thread_time() - started[1]
                started.clear()
                self.gc_pause.observe(seconds)
                if seconds >= GC_PAUSE_LOGGED:
                    log.warning(
                        "aggregator.gc_pause generation=%d seconds=%.3f cpu=%.3f collected=%d",
                        info["generation"],
                        seconds,
                        cpu,
                        info["collected"],
                    )
                if diagnose and seconds >= LOOP_BUSY_LOGGED:
                    log.warning("aggregator.gc_largest %s", largest_containers(info["generation"]))

        gc.callbacks.append(callback)

    async def watch_event_loop(
        self, stopping: Callable[[], bool], every: float = 0.02, sample_every: float = 0.0
    ) -> None:
        """Sleep `every` seconds again and again; how much later than asked each wake-up came
        is how long something held the event loop (a stall), observed in `loop_stall`. With a
        sample every `sample_every` seconds, a wake-up after over LOOP_BUSY_LOGGED of the
        loop's CPU is logged with what the loop ran meanwhile (`aggregator.loop_sampler`)."""
        sampler = LoopSampler(sample_every) if sample_every > 0 else None
        if sampler is not None:
            sampler.start()
        try:
            while not stopping():
                asked, cpu = time.perf_counter(), time.thread_time()
                await asyncio.sleep(every)
                stall = max(0.0, time.perf_counter() - asked - every)
                # The loop's own CPU meanwhile, at most the stall: a stall the OS caused (a
                # busy machine not running the process) uses none, one the worker's code
                # caused uses all of it. Bounded by the stall because the CPU also counts
                # the `every` asked for, when the loop was meant to run other callbacks:
                # 25 ms of them and a 90 ms turn are no stall over 100 ms.
                busy = min(stall, time.thread_time() - cpu)
                self.loop_stall.observe(stall)
                self.loop_busy.observe(busy)
                if busy >= LOOP_BUSY_LOGGED:
                    log.warning(
                        "aggregator.loop_busy cpu=%.3f stall=%.3f ran=%r",
                        busy,
                        stall,
                        "" if sampler is None else sampler.summary(asked),
                    )
        finally:
            if sampler is not None:
                sampler.stop()

    def observe_freshness(self, accepted_ms: list[int]) -> None:
        now_s = time.time()
        for ms in accepted_ms:
            self.freshness.observe(max(0.0, now_s - ms / 1000))

    def record(self, counts: Counter[str]) -> None:
        for name, n in counts.items():
            if name.startswith("dead_letter:"):
                self.dead_letters.labels(reason=name.split(":", 1)[1]).inc(n)
                self.events.labels(outcome="dead_letter").inc(n)
            elif name == "period_closed":
                self.periods_closed.inc(n)
            elif name == "marker_expired":
                continue
            else:
                self.events.labels(outcome=name).inc(n)
                if name == "duplicate":
                    self.duplicates.inc(n)
                elif name == "late":
                    self.late.inc(n)
