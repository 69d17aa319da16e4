"""The period closer's driver: the watermarks of the owned events partitions, the schedule
seeded once per assignment, and the ticks that visit what the watermarks passed (see
`aggregator.closing` for the rules, `aggregator.watermark` for the watermark)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.allocator import FreeMemoryReturner
from aggregator.ledger import Ledger
from aggregator.metrics import collect_young
from aggregator.watermark import EndOffsets, Watermarks
from meterflow.event_records import partition_for

if TYPE_CHECKING:
    from aggregator.app import Aggregator

log = logging.getLogger(__name__)

# Visits per slice of a tick (and at most SLICE_SECONDS of them), and catalog entries per
# slice of a seed: the event loop is given back between slices (issue 15: no stall over
# 100 ms, whatever the number of subscriptions due at once).
SLICE = 500
SLICE_SECONDS = 0.02
MAX_SLICES = 100_000  # per partition and tick: a bound, should a visit keep itself due


class ClosingDriver:
    def __init__(self, worker: Aggregator) -> None:
        self.worker = worker
        self.watermarks = Watermarks()
        self.end_offsets = EndOffsets(
            worker.settings.bootstrap_servers, worker.settings.topics.events
        )
        # Set when something may be due now: the closer runs at once instead of at its
        # next interval (a termination, a watermark that moved past a due visit).
        self.wake = asyncio.Event()
        self.free_memory = FreeMemoryReturner()
        self._seeded_generation = -1
        self.warm_generation = -1
        self._planning: set[asyncio.Future[None]] = set()  # catalog changes planned in slices

    def plan_visits(self, ledgers: dict[str, Ledger], visits: dict[str, float]) -> None:
        """Schedule the visits a batch (or a slice of one) asked for; wake the closer when one
        is due now (held events expired, late usage to send)."""
        for key, due in visits.items():
            self.worker.closer.plan_ledger(ledgers[key].partition, key, due)
        if visits and min(visits.values()) <= time.time():
            self.wake.set()

    def progressed(self) -> None:
        """A batch's progress advanced: wake the closer when a watermark moved past something
        due (a termination waiting for the stream to pass it)."""
        moved = self.watermarks.advance(self.worker.progress.known())
        now = time.time()
        for partition in moved:
            next_due = self.worker.closer.schedule.next_due(partition)
            if next_due is not None and next_due <= now:
                self.wake.set()

    def on_catalog(self, records: list[Any]) -> None:
        """Catalog records changed the view: visit the subscriptions they concern once the
        stream has passed this instant (a termination closes then). A change concerning
        more than a slice (a plan, a metric, a timezone: up to every subscription) is
        planned in slices that give the event loop back."""
        now = time.time()
        for record in records:
            affected = self.worker.catalog.affected(record)
            if not self._plan_slice(affected, now):
                task = asyncio.ensure_future(self._plan_rest(affected, now))
                self._planning.add(task)
                task.add_done_callback(self._planning.discard)
        self.wake.set()

    def _plan_slice(self, affected: Iterator[tuple[str, str]], now: float) -> bool:
        """Plan up to SLICE of `affected`; True once none is left."""
        taken = 0
        for organization_id, external_id in itertools.islice(affected, SLICE):
            self.worker.closer.plan(organization_id, external_id, now)
            taken += 1
        return taken < SLICE

    async def _plan_rest(self, affected: Iterator[tuple[str, str]], now: float) -> None:
        done = False
        while not done:
            await asyncio.sleep(0)
            done = self._plan_slice(affected, now)
            self.wake.set()

    async def run(self) -> None:
        """The period closer's loop: a tick at every wake-up, or every `close_interval`."""
        while not self.worker.app.should_stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.worker.agg.close_interval)
            self.wake.clear()
            try:
                await self.tick()
            except Exception:  # the closer must keep going
                log.exception("aggregator.tick_failed")
                await asyncio.sleep(self.worker.agg.close_interval)

    async def seed(self, owned: set[int], generation: int) -> bool:
        """After an assignment: first what current usage needs (the dedupe marker index, one
        answer computed: the worker is ready then), then the schedule: every owned
        subscription, and every ledger with held events, late usage or an unsent outbox, due
        for a visit, in slices that yield to the stream. The closer starts once it is seeded
        (its cost grows with the subscriptions: a restart answers before it is done).
        False when partitions moved meanwhile."""
        self.worker.closer.schedule.clear()
        self.watermarks.clear()
        # The catalog and the recovered state are long-lived: out of the cyclic collector's
        # sight, a full collection (Python's own, or the gc.collect() Faust's RocksDB store
        # runs at every rebalance) no longer walks them: about a second per million objects.
        gc.freeze()
        await self.worker.markers.prepare()
        if generation != self.worker.generation:
            return False
        self.warm_up(owned)
        self.warm_generation = generation
        partitions = self.worker.settings.partitions
        for i, (organization_id, external_id) in enumerate(self.worker.catalog.subscription_ids()):
            partition = partition_for(external_id.encode(), partitions)
            if partition in owned:  # (hashed once: the id's partition goes along)
                self.worker.closer.plan(organization_id, external_id, 0.0, partition)
            if i % SLICE == SLICE - 1:
                collect_young()
                await asyncio.sleep(0)
                if generation != self.worker.generation:
                    return False
        for i, (key, value) in enumerate(self.worker.ledgers.items()):
            if value["p"] in owned and (value["held"] or value["outbox"] or value["late"]):
                self.worker.closer.plan_ledger(value["p"], key, 0.0)
            if i % SLICE == SLICE - 1:
                await asyncio.sleep(0)
                if generation != self.worker.generation:
                    return False
        # The schedule and the marker index just built are long-lived too (see above).
        gc.freeze()
        self._seeded_generation = generation
        return True

    def warm_up(self, owned: set[int]) -> None:
        """Answer one owned subscription's current usage (the marker index is built by
        then), so the first batch and the first request after /ready find them done."""
        started = time.perf_counter()
        markers = len(self.worker.markers)
        probe = next(
            (
                ids
                for ids in self.worker.catalog.subscription_ids()
                if partition_for(ids[1].encode(), self.worker.settings.partitions) in owned
            ),
            None,
        )
        if probe is not None:
            try:
                self.worker.usage(*probe)
            except Exception:  # a bug in one subscription's usage must not keep us unready
                log.exception("aggregator.warm_up_usage_failed subscription=%s", probe[1])
        log.info(
            "aggregator.warmed_up markers=%d ledgers=%d seconds=%.3f",
            markers,
            len(self.worker.ledgers),
            time.perf_counter() - started,
        )

    async def tick(self) -> None:
        """Ask the broker where the owned partitions end, move the watermarks, and visit
        what they passed, in slices that give the event loop back between them."""
        if self.worker.app.should_stop or not self.worker.recovered():
            return
        generation = self.worker.generation
        owned = self.worker.owned_partitions()
        if self._seeded_generation != generation and not await self.seed(owned, generation):
            return
        asked_at = time.time()
        ends = await self.end_offsets.ends(self.watermarks.to_ask(owned))
        if generation != self.worker.generation:
            return
        self.watermarks.asked(asked_at, ends)
        self.watermarks.advance(self.worker.progress.applied(owned))
        now = datetime.now(UTC)
        counts: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for partition in sorted(owned):
            mark = self.watermarks.mark(partition)
            if mark is None:
                continue
            self.worker.metrics.watermark_lag.labels(partition=str(partition)).set(
                max(0.0, asked_at - mark)
            )
            for _ in range(MAX_SLICES):
                self.worker.closer.run_due(partition, mark, now, counts, SLICE, SLICE_SECONDS)
                collect_young()  # each visit replaced its schedule entry (see there)
                # Each slice's messages leave before the next slice is visited: a tick that
                # closes a million periods never holds them all, nor the loop, at once.
                await self.worker.flush_outboxes(self.worker.closer.take_outboxes())
                self.worker.metrics.record(counts)  # counted as they leave, slice by slice
                total.update(counts)
                counts.clear()
                due = self.worker.closer.schedule.next_due(partition)
                if due is None or due > mark:
                    break
                await asyncio.sleep(0)
                if generation != self.worker.generation or not self.worker.recovered():
                    return
        while self.worker.closer.expire_markers(now, owned, counts):
            await asyncio.sleep(0)
            if generation != self.worker.generation:
                return
        await self.worker.flush_tables()
        self.worker.metrics.record(counts)
        total.update(counts)
        if total:
            log.info("aggregator.tick %s", " ".join(f"{k}={v}" for k, v in sorted(total.items())))
        self.worker.metrics.table_keys.labels(table="ledgers").set(len(self.worker.ledgers))
        self.worker.metrics.table_keys.labels(table="markers").set(len(self.worker.markers))
        self.worker.metrics.catalog_subscriptions.set(len(self.worker.catalog))
        self.worker.metrics.catalog_read_seconds.set(self.worker.catalog_reader.read_seconds)
        await self.free_memory.maybe()
