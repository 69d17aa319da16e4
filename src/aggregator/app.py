"""The aggregator's Faust app: batches of events folded into subscription ledgers held in
Faust tables, a timer closing periods, and the current-usage view.

Why an event is counted exactly once although delivery is only at least once
---------------------------------------------------------------------------------

Faust runs with at-least-once delivery (its `exactly_once` mode is unreliable:
faust-streaming issues 517 and 323). Every state change therefore has to be idempotent,
and the argument rests on three facts:

1. `Stream.take_events` (faust-streaming 0.15.3) acknowledges the events of a batch only
   after the body of the `async for` has finished with the batch, and Faust commits only
   acknowledged offsets. It acknowledges them too when the body raises, so a batch that
   fails ends the process at once (`aggregate`), before anything more is committed.
2. The body does not finish before every changelog record the batch wrote has been
   acknowledged by the broker (`FaustTableStore.flush`, producer acks=all). Faust's own
   `send_soon` buffer is not used for them: its flush gives up on a message after 0.1 s,
   so a commit could overtake a record still queued there.
3. A table changelog record is one Kafka record: after a crash it is there whole or not
   at all, and recovery replays the records of a partition in order (the RocksDB store from
   the last offset it recorded as acknowledged, `FaustTableStore.flush`; the memory store
   from the changelog's beginning).

From (1) and (2): a committed offset never passes an event whose effects are not durable.
The opposite does happen (effects durable, offset not committed: SIGKILL before the next
commit), and then the events are delivered again. From (3), each subscription's whole
state lives in one table value, its ledger, which records the highest source offset it
has applied for each partition; a redelivered event at or below that offset is skipped,
one above it has not been applied. Dedupe markers (64-bit hashes of transaction ids,
`aggregator.markers`) are separate records, written only after the ledgers of their batch
are acknowledged (`process`), so a marker never survives without its event's effect:
an event above its ledger's `applied` that finds a marker is a duplicate; a ledger that
survived a crash its markers did not gets them back from the redelivered events.

One more guard, because faust-streaming 0.15.3 does not always deliver every message:
around the seek to committed offsets when a worker starts, it can hand a message to the
agent twice, or acknowledge one without handing it over at all (and then commit past it).
The `progress` table records, per source partition, the next offset to apply (written
after the batch's effects are durable, its acknowledgement awaited by the next batch: it may
lag one batch behind after a crash, never run ahead); a batch drops messages below it and
fills any hole above it by reading the missing offsets straight from Kafka
(`SourceProgress.contiguous`); what such a read brings back was applied already, and the
ledgers' `applied` positions skip it.

Messages the ledger decides to send (closed periods, dead letters of known subscriptions)
go into the ledger's outbox in the same record as the state change, and leave it only
after the broker acknowledged them; a crash in between sends them again, which is why a
closed period carries a deterministic `period_key`.

Tables are written through `FaustTableStore`, which names the changelog partition
explicitly: a batch mixes partitions, and Faust would otherwise log each write to the
partition of whatever event is current.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from socket import gethostname
from typing import Any, cast

import faust
import orjson

from aggregator import kafka_transport
from aggregator.catalog_view import CatalogReader, CatalogView
from aggregator.closing import PeriodCloser
from aggregator.closing_driver import ClosingDriver
from aggregator.current_usage import current_usage
from aggregator.domain import Domain
from aggregator.faust_store import ROCKSDB_OPTIONS, FaustTableStore
from aggregator.ledger import Ledger, ledger_key
from aggregator.markers import DedupeMarkers
from aggregator.metrics import AggregatorMetrics, collect_young
from aggregator.pages import add_pages, forwarding_client
from aggregator.processing import (
    PERIODS_CLOSED,
    BatchResult,
    EventProcessor,
    SourceMessage,
    Windows,
)
from aggregator.progress import SourceProgress
from aggregator.settings import AggregatorSettings
from meterflow.event_records import requeued_from
from meterflow.settings import Settings

log = logging.getLogger(__name__)

# Ledgers whose outbox is sent, or emptied, between two yields to the event loop: at a
# million periods closed at once, a slice's 500 sends and 500 rewrites in one go held the
# loop for over 100 ms of CPU on a loaded machine (issue 15).
YIELD_EVERY = 100


class Aggregator:
    """The parts of one aggregator app, wired together (the app's composition root)."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        agg: AggregatorSettings,
        domain: Domain,
    ) -> None:
        self.app = app
        self.settings = settings
        self.agg = agg
        self.domain = domain
        self.metrics = AggregatorMetrics()
        self.catalog = CatalogView(settings.partitions)
        self.catalog_reader = CatalogReader(
            settings.bootstrap_servers, settings.topics.catalog, self.catalog, partitioned=True
        )
        self.windows = Windows(
            skew=timedelta(seconds=agg.clock_skew),
            hold=timedelta(seconds=agg.hold_window),
            late=timedelta(seconds=agg.late_window),
        )
        self.events_topic = app.topic(
            settings.topics.events,
            schema=kafka_transport.RawRecords(),  # raw bytes, handed over undecoded
            partitions=settings.partitions,
        )

        def table(name: str) -> Any:
            return app.Table(
                name,
                partitions=settings.partitions,
                # bytes in and out: values are orjson, encoded by FaustTableStore itself.
                key_type=bytes,
                value_type=bytes,
                # A copy each: Faust's RocksDB store pops keys from the dict it is given.
                options=dict(ROCKSDB_OPTIONS) if agg.store == "rocksdb" else None,
            )

        self.ledger_table = table("ledgers")
        self.marker_table = table("markers")
        self.ledgers = FaustTableStore(self.ledger_table)
        self.marker_segments = FaustTableStore(self.marker_table, raw=True)
        self.progress_table = FaustTableStore(table("progress"))
        self.progress = SourceProgress(
            self.progress_table, settings.bootstrap_servers, settings.topics.events
        )
        self.markers = DedupeMarkers(self.marker_segments)
        self.processor = EventProcessor(
            domain, self.catalog, self.ledgers, self.markers, self.windows
        )
        self.closer = PeriodCloser(self.processor, settings.partitions)
        self.driver = ClosingDriver(self)
        self.catalog_reader.on_change.append(self.driver.on_catalog)
        self._outbox_lock = asyncio.Lock()
        self._progress_sent: asyncio.Future[None] | None = None
        self._markers_sent: list[asyncio.Future[None]] = []
        # Set once the producer knows the events topic's partitions (see learn_partitions).
        self.routing_ready = asyncio.Event()
        # Counts rebalances (revocations and assignments): a write computed before one of
        # them, and made after, could replace the ledger of a partition that moved.
        self.generation = 0

    def owned_partitions(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.topics.events
        }

    def ready(self) -> bool:
        """Recovered (below) and warmed up for this assignment: the dedupe marker index
        built, one current-usage answer computed (`ClosingDriver.seed`). Before, the first
        requests would wait behind that work on the event loop (issue 15: 5 s and a 503
        right after "ready")."""
        return self.recovered() and self.driver.warm_generation == self.generation

    def recovered(self) -> bool:
        """Catalog loaded, tables recovered for the current assignment, partitions owned.

        `app.rebalancing` matters: Faust's `recovery.completed` stays set from the previous
        recovery while a new assignment's partitions are still being restored, and a
        period close run in that window would see no ledger for a subscription it now owns
        and write a fresh one over the real one."""
        app = cast(Any, self.app)
        return (
            self.catalog_reader.ready.is_set()
            and self.routing_ready.is_set()
            and app.tables.recovery.completed.is_set()
            and not app.rebalancing
            and bool(self.owned_partitions())
        )

    async def process(self, batch: list[Any]) -> None:
        await self.catalog_reader.ready.wait()
        if self.agg.fault == "fail_batch":
            raise RuntimeError("METERFLOW_AGGREGATOR_FAULT=fail_batch")
        messages = [
            SourceMessage(
                partition=e.message.partition,
                offset=e.message.offset,
                key=e.message.key,
                value=e.message.value,
                timestamp_ms=int(e.message.timestamp * 1000),
                requeue_of=requeued_from(e.message.headers),
            )
            for e in batch
        ]
        await self.markers.prepare()  # after recovery, built in slices (aggregator.markers)
        if self._progress_sent is not None:
            # The last batch's progress, sent while this batch was being collected; a record
            # the broker refused fails this batch (the progress stays behind: safe).
            await self._progress_sent
            self._progress_sent = None
        gaps = self.progress.gap_filled
        messages, expected = await self.progress.contiguous(messages)
        self.metrics.events.labels(outcome="gap_filled").inc(self.progress.gap_filled - gaps)
        previous: tuple[BatchResult, list[SourceMessage], asyncio.Future[None]] | None = None
        while messages:
            # A slice of the batch at a time (`METERFLOW_AGGREGATOR_SLICE_SECONDS` of events),
            # the event loop given back between them (a batch of 1,000 packs holds some
            # 25,000 events: applied in one go, it held the loop for up to a second when they
            # were subscriptions' first events: issue 15). A slice is what a smaller batch
            # would be, with one difference that only helps: the progress (and with it the
            # watermarks the closer trusts) advances once the whole batch is durable. Its
            # ledgers' acknowledgement is awaited while the next slice is applied (its
            # markers are in the index at once, for the next slice to find; written to the
            # table only once those ledgers are durable, `finish_slice`).
            if previous is not None and previous[0].marks.indexed != self.markers.generation:
                # The index was rebuilt (a rebalance) without the last slice's markers: they
                # must be in it before the next slice is looked up in it.
                await self.finish_slice(*previous)
                previous = None
            result = self.processor.apply_batch(messages, datetime.now(UTC), self.agg.slice_seconds)
            applied, messages = messages[: result.taken], messages[result.taken :]
            self.markers.index_batch(result.marks)
            durable = asyncio.ensure_future(self.ledgers.flush())
            if previous is not None:
                await self.finish_slice(*previous)
            previous = (result, applied, durable)
            await asyncio.sleep(0)  # (awaiting a flush already done gives nothing back)
        if previous is not None:
            await self.finish_slice(*previous)
        # Every slice's markers durable too (each slice's left once its ledgers were
        # acknowledged), before the batch's offsets can be.
        sent, self._markers_sent = self._markers_sent, []
        await asyncio.gather(*sent)
        # Then the progress, never ahead of the effects it vouches for. Should anything
        # above fail, the old progress stays, and the next batch reads this one again. Its
        # acknowledgement is awaited by the next batch, not this one: progress that is
        # behind (a crash before it is durable, with the offsets committed) only makes the
        # next run read the batch again and skip it as replayed, and the round trip overlaps
        # the next batch's collection instead of idling the worker.
        self.progress.advance(expected)
        self._progress_sent = asyncio.ensure_future(self.progress_table.flush())
        self.driver.progressed()
        self.metrics.batch_size.observe(len(batch))

    async def finish_slice(
        self, result: BatchResult, applied: list[SourceMessage], sent: asyncio.Future[None]
    ) -> None:
        """Once a slice's ledgers are durable (`sent`), write its dedupe markers, sent while
        the batch goes on (it awaits them before it ends), and what the slice has to send."""
        await sent
        collect_young()  # a slice's survivors only (aggregator.metrics.collect_young)
        self.processor.remember(result)
        self._markers_sent.append(asyncio.ensure_future(self.marker_segments.flush()))
        self.metrics.observe_freshness([m.timestamp_ms for m in applied])
        self.driver.plan_visits(result.ledgers, result.visits)
        self.metrics.record(result.counts)
        for letter in result.dead_letters:
            await self.app.producer.send(
                self.settings.topics.dead_letter,
                None if letter.key is None else letter.key.encode(),
                orjson.dumps(letter.value),
                None,
                None,
                None,
            )
        outboxes = {
            k: (ledger.partition, ledger.value)
            for k, ledger in result.ledgers.items()
            if ledger.value["outbox"]
        }
        if outboxes:  # (it awaits the markers sent above first)
            await self.flush_outboxes(outboxes)

    async def flush_tables(self) -> None:
        await self.ledgers.flush()
        await self.marker_segments.flush()

    async def flush_outboxes(self, ledgers: dict[str, tuple[int, dict[str, Any]]]) -> None:
        """Send what the outboxes of `ledgers` hold, then remove what the broker acknowledged.

        `ledgers` are values the caller just wrote, by key: (partition, value). They are
        made durable first (a message never leaves before the state change that produced it
        could survive a crash), and not read back: a value the stream changed since holds at
        least these messages, and its new ones are the stream's to send, once durable."""
        await self.flush_tables()
        if not ledgers:
            return
        async with self._outbox_lock:
            generation = self.generation
            sent: dict[str, tuple[int, set[int]]] = {}
            futures = []
            for n, (key, (partition, value)) in enumerate(ledgers.items()):
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # (a bound on the loop's time, see YIELD_EVERY)
                if not value["outbox"]:
                    continue
                sent[key] = (partition, {message["id"] for message in value["outbox"]})
                for message in value["outbox"]:
                    topic = (
                        self.settings.topics.periods_closed
                        if message["topic"] == PERIODS_CLOSED
                        else self.settings.topics.dead_letter
                    )
                    futures.append(
                        await self.app.producer.send(
                            topic,
                            message["key"].encode(),
                            orjson.dumps(message["value"]),
                            None,
                            None,
                            None,
                        )
                    )
            await asyncio.gather(*futures)
            if generation != self.generation or not self.recovered():
                # Partitions moved (or are being restored) while we awaited: the table may
                # not hold these ledgers, or hold them half restored, and writing would
                # replace the owner's. Whoever owns them sends the outbox again, hence
                # `period_key`.
                return
            for n, (key, (partition, ids)) in enumerate(sent.items()):
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                    if generation != self.generation or not self.recovered():
                        return  # (as above)
                # Read again: the stream may have changed the ledger while we awaited.
                stored = self.ledgers.get(key, partition)
                if stored is None:
                    continue
                ledger = Ledger(stored, partition)
                ledger.forget_sent(ids)
                self.ledgers.put(partition, key, ledger.seal())
            await self.flush_tables()

    def usage(self, organization_id: str, external_subscription_id: str) -> dict[str, Any] | None:
        terms = self.catalog.terms(organization_id, external_subscription_id)
        if terms is None:
            return None
        ledger = self.ledgers.get(ledger_key(organization_id, external_subscription_id))
        return current_usage(self.domain, terms, ledger, datetime.now(UTC))


def create_app(
    settings: Settings,
    agg: AggregatorSettings,
    *,
    domain: Domain | None = None,
) -> tuple[faust.App, Aggregator]:
    """Build (without starting) the Faust app and the aggregator wired into it."""
    if domain is None:
        from aggregator.billing_domain import BillingDomain

        domain = BillingDomain()
    app = faust.App(
        agg.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="rocksdb://" if agg.store == "rocksdb" else "memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=agg.instance_id or f"{agg.app_id}@{gethostname()}:{agg.port}",
        broker_commit_interval=agg.commit_interval,
        broker_session_timeout=agg.session_timeout,
        broker_heartbeat_interval=max(0.5, agg.session_timeout / 4),
        producer_acks=-1,
        datadir=str(agg.data_dir),
        web_enabled=True,
        web_host=agg.host,
        web_port=agg.port,
        canonical_url=f"http://{agg.host}:{agg.port}",
        autodiscover=False,
        stream_buffer_maxsize=max(4096, agg.batch_size * 2),
        Monitor=kafka_transport.QuietMonitor,  # no statistics per record (read by nothing)
        HttpClient=forwarding_client,  # bounded forwards to a partition's owner
    )
    kafka_transport.install(app, round(agg.fetch_max_wait * 1000))
    aggregator = Aggregator(app, settings, agg, domain)

    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(agg.batch_size, within=agg.batch_within):
            try:
                await aggregator.process(batch)
            except Exception:
                # `take_events` acknowledges a batch even when its body raises, and Faust's
                # supervisor would restart the agent past it (a few times, then leave the
                # worker ready and idle). Exit at once instead, as a crash would: nothing
                # more is committed, and a restart resumes from the last committed offsets.
                log.critical(
                    "aggregator.batch_failed: exiting without acknowledging the batch; "
                    "restart the worker (it resumes from the last committed offsets)",
                    exc_info=True,
                )
                logging.shutdown()
                os._exit(70)

    app.agent(aggregator.events_topic, name="aggregate")(aggregate)

    async def follow_catalog() -> None:
        await aggregator.catalog_reader.run()

    app.task(follow_catalog)

    async def learn_partitions() -> None:
        # The current-usage route hashes the key with the *producer's* view of the events
        # topic, and aiokafka's producer learns a topic's partitions only when asked: without
        # this, a usage request before any produce to that topic fails inside Faust.
        # (faust-streaming 0.15.3 offers no public accessor for its aiokafka producer.)
        producer = cast(Any, app.producer)._ensure_producer()
        # Tracked too: partitions_for alone does not track a topic the bootstrap metadata
        # (all topics) already holds, and the next refresh, which asks for the tracked topics
        # only (say, on the first changelog write), would forget it: every usage request
        # then failed with a TypeError inside Faust's router until the worker restarted.
        await producer.client.add_topic(settings.topics.events)
        await producer.partitions_for(settings.topics.events)
        aggregator.routing_ready.set()

    app.task(learn_partitions)

    async def close_periods() -> None:
        await aggregator.driver.run()

    app.task(close_periods)

    async def watch_event_loop() -> None:
        await aggregator.metrics.watch_event_loop(
            lambda: bool(app.should_stop), sample_every=agg.loop_sample_every
        )

    app.task(watch_event_loop)

    add_pages(app, aggregator)

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # (Faust sends the whole assignment, before the stream gets any of its events.)
        events = settings.topics.events
        aggregator.catalog_reader.assign(
            frozenset(tp.partition for tp in assigned if tp.topic == events)
        )
        # Recovery is about to change the marker segments and the progress held here.
        aggregator.generation += 1
        aggregator.markers.invalidate()
        aggregator.progress.forget()
        aggregator.driver.wake.set()  # seed and warm up for the new assignment at once

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        aggregator.generation += 1
        aggregator.driver.watermarks.clear()

    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app, aggregator
