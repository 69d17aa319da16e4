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
   at all, and recovery (memory store, so always from the changelog's beginning) replays
   the records of a partition in order.

From (1) and (2): a committed offset never passes an event whose effects are not durable.
The opposite does happen (effects durable, offset not committed: SIGKILL before the next
commit), and then the events are delivered again. From (3), each subscription's whole
state lives in one table value, its ledger, which records the highest source offset it
has applied for each partition; a redelivered event at or below that offset is skipped,
one above it has not been applied. Dedupe markers are separate records, so a marker may
survive without its ledger or the reverse: a marker names the (partition, offset) that
set it, so a redelivered event finding its own marker is not a duplicate (the ledger
decides), any other event with the same transaction id is; a replayed event whose marker
was lost sets it again.

One more guard, because faust-streaming 0.15.3 does not always deliver every message:
around the seek to committed offsets when a worker starts, it can hand a message to the
agent twice, or acknowledge one without handing it over at all (and then commit past it).
The `progress` table records, per source partition, the next offset to apply (written
after the batch's effects are durable); a batch drops messages below it and fills any
hole above it by reading the missing offsets straight from Kafka (`Aggregator.contiguous`).

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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response, View

from aggregator.catalog_view import CatalogReader, CatalogView
from aggregator.closing import PeriodCloser
from aggregator.current_usage import UsageFailed, current_usage
from aggregator.domain import Domain
from aggregator.ledger import Ledger, ledger_key
from aggregator.markers import DedupeMarkers
from aggregator.metrics import AggregatorMetrics
from aggregator.processing import (
    PERIODS_CLOSED,
    EventProcessor,
    SourceMessage,
    Windows,
)
from aggregator.settings import AggregatorSettings
from meterflow.event_records import requeued_from
from meterflow.settings import Settings

log = logging.getLogger(__name__)


class FaustTableStore:
    """A Faust table (memory store) behind the PartitionedStore interface.

    Writes change the local store at once and queue their changelog record; `flush()`
    hands the queued records to the producer and waits until the broker acknowledged them.
    Faust's own `send_soon` buffer is bypassed: its flush gives up on a message that takes
    more than 0.1 s, so an offset commit could overtake a changelog record still queued.
    Values are serialised (orjson) when written, held decoded.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: list[tuple[int, bytes, bytes | None]] = []
        # One flush at a time, so records reach the changelog in the order they were
        # written (two overlapping flushes could put an older value of a key after a newer
        # one), and so a flush returns only once earlier writes are durable too.
        self._flush_lock = asyncio.Lock()

    @property
    def _store(self) -> Any:
        return self.table.data

    def get(self, key: str) -> Any | None:
        store = self._store
        raw = store.data.get(key.encode())
        if isinstance(raw, bytes | bytearray):
            raw = orjson.loads(raw)
            store.data[key.encode()] = raw
        return raw

    def put(self, partition: int, key: str, value: Any) -> None:
        store = self._store
        bkey = key.encode()
        store.data[bkey] = value
        store._key_partition[bkey] = partition
        self.pending.append((partition, bkey, orjson.dumps(value)))

    def delete(self, partition: int, key: str) -> None:
        store = self._store
        bkey = key.encode()
        store.data.pop(bkey, None)
        store._key_partition.pop(bkey, None)
        self.pending.append((partition, bkey, None))

    async def flush(self) -> None:
        """Produce the queued changelog records and wait for the broker's acknowledgement
        (of these and of every record queued before them)."""
        async with self._flush_lock:
            if not self.pending:
                return
            pending, self.pending = self.pending, []
            producer = self.table.app.producer
            topic = self.table.changelog_topic.get_topic_name()
            futures = [
                await producer.send(topic, key, value, partition, None, None)
                for partition, key, value in pending
            ]
            await asyncio.gather(*futures)

    def items(self) -> Iterator[tuple[str, Any]]:
        for bkey in list(self._store.data):
            value = self.get(bkey.decode())
            if value is not None:
                yield bkey.decode(), value

    def __len__(self) -> int:
        return len(self._store.data)


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
        self.catalog = CatalogView()
        self.catalog_reader = CatalogReader(
            settings.bootstrap_servers, settings.topics.catalog, self.catalog
        )
        self.windows = Windows(
            close_grace=timedelta(seconds=agg.close_grace),
            hold=timedelta(seconds=agg.hold_window),
            late=timedelta(seconds=agg.late_window),
        )
        self.events_topic = app.topic(
            settings.topics.events,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        table_options: dict[str, Any] = {
            "partitions": settings.partitions,
            # bytes in and out: values are orjson, encoded by FaustTableStore itself.
            "key_type": bytes,
            "value_type": bytes,
        }
        self.ledger_table = app.Table("ledgers", **table_options)
        self.marker_table = app.Table("markers", **table_options)
        self.ledgers = FaustTableStore(self.ledger_table)
        self.marker_segments = FaustTableStore(self.marker_table)
        self.progress = FaustTableStore(app.Table("progress", **table_options))
        self.markers = DedupeMarkers(self.marker_segments)
        self.processor = EventProcessor(
            domain, self.catalog, self.ledgers, self.markers, self.windows
        )
        self.closer = PeriodCloser(
            domain,
            self.catalog,
            self.ledgers,
            self.markers,
            self.processor,
            self.windows,
            settings.partitions,
        )
        self._outbox_lock = asyncio.Lock()
        # Per source partition, the next offset to apply: everything below it is applied.
        self._expected: dict[int, int] = {}
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
        messages, expected = await self.contiguous(messages)
        result = self.processor.apply_batch(messages, datetime.now(UTC))
        # Durable before this batch's offsets can be acknowledged (and so committed).
        await self.flush_tables()
        self.metrics.observe_freshness([m.timestamp_ms for m in messages])
        # Then the progress, never ahead of the effects it vouches for. Should anything
        # above fail, the old progress stays, and the next batch reads this one again.
        self._expected.update(expected)
        for partition, next_offset in expected.items():
            self.progress.put(partition, f"p{partition}", {"next": next_offset})
        await self.progress.flush()
        self.metrics.batch_size.observe(len(messages))
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
        await self.flush_outboxes(
            [k for k, ledger in result.ledgers.items() if ledger.value["outbox"]]
        )

    async def tick(self) -> None:
        if self.app.should_stop or not self.ready():
            return
        counts = self.closer.tick(datetime.now(UTC), self.owned_partitions())
        await self.flush_tables()
        self.metrics.record(counts)
        if counts:
            log.info("aggregator.tick %s", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        await self.flush_outboxes([k for k, v in self.ledgers.items() if v["outbox"]])
        self.metrics.table_keys.labels(table="ledgers").set(len(self.ledgers))
        self.metrics.table_keys.labels(table="markers").set(len(self.markers))

    async def contiguous(
        self, messages: list[SourceMessage]
    ) -> tuple[list[SourceMessage], dict[int, int]]:
        """The batch's messages with nothing skipped and nothing applied before.

        faust-streaming 0.15.3 can, around the seek to committed offsets when a worker starts,
        deliver a message twice or acknowledge one without ever handing it to the agent (and
        then commit past it). Messages below a partition's durable progress are dropped
        here; a hole is filled by reading the missing offsets straight from Kafka. Also
        returns each partition's next offset once the batch is applied.
        """
        by_partition: dict[int, list[SourceMessage]] = {}
        for message in messages:
            by_partition.setdefault(message.partition, []).append(message)
        result: list[SourceMessage] = []
        progress: dict[int, int] = {}
        for partition, items in by_partition.items():
            expected = self._expected.get(partition)
            if expected is None:
                stored = self.progress.get(f"p{partition}")
                expected = 0 if stored is None else int(stored["next"])
            for message in items:
                if message.offset < expected:
                    continue
                if message.offset > expected:
                    missing = await self.read_range(partition, expected, message.offset)
                    log.warning(
                        "aggregator.offset_gap_filled partition=%d from=%d to=%d read=%d",
                        partition,
                        expected,
                        message.offset,
                        len(missing),
                    )
                    self.metrics.events.labels(outcome="gap_filled").inc(len(missing))
                    result.extend(missing)
                result.append(message)
                expected = message.offset + 1
            progress[partition] = expected
        return result, progress

    async def read_range(self, partition: int, start: int, end: int) -> list[SourceMessage]:
        """Messages [start, end) of one events partition, read with a plain consumer."""
        tp = TopicPartition(self.settings.topics.events, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found: list[SourceMessage] = []
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for record in batches.get(tp, []):
                    if start <= record.offset < end:
                        found.append(
                            SourceMessage(
                                partition,
                                record.offset,
                                record.key,
                                record.value,
                                record.timestamp,
                                requeued_from(record.headers),
                            )
                        )
        finally:
            await consumer.stop()
        return found

    def forget_progress(self) -> None:
        """Partitions moved: read each one's progress again from the (recovered) table."""
        self._expected.clear()

    async def flush_tables(self) -> None:
        await self.ledgers.flush()
        await self.marker_segments.flush()

    async def flush_outboxes(self, keys: list[str]) -> None:
        """Send what the ledgers' outboxes hold, then remove what the broker acknowledged.

        The ledgers are made durable first: a message never leaves before the state change
        that produced it could survive a crash."""
        await self.flush_tables()
        if not keys:
            return
        async with self._outbox_lock:
            generation = self.generation
            sent: dict[str, tuple[int, set[int]]] = {}
            futures = []
            for key in keys:
                value = self.ledgers.get(key)
                if not value or not value["outbox"]:
                    continue
                sent[key] = (value["p"], {message["id"] for message in value["outbox"]})
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
            if generation != self.generation or not self.ready():
                # Partitions moved (or are being restored) while we awaited: the table may
                # not hold these ledgers, or hold them half restored, and writing would
                # replace the owner's. Whoever owns them sends the outbox again, hence
                # `period_key`.
                return
            for key, (partition, ids) in sent.items():
                # Read again: the stream may have changed the ledger while we awaited.
                value = self.ledgers.get(key)
                if value is None:
                    continue
                ledger = Ledger(value, partition)
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
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
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
    )
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
        await producer.partitions_for(settings.topics.events)
        aggregator.routing_ready.set()

    app.task(learn_partitions)

    async def close_periods() -> None:
        try:
            await aggregator.tick()
        except Exception:  # the timer must keep ticking
            log.exception("aggregator.tick_failed")

    app.timer(agg.close_interval, name="close_periods")(close_periods)

    async def usage_view(view: View, request: Request, external_subscription_id: str) -> Response:
        organization_id = request.query.get("organization_id")
        if not organization_id:
            return view.json(_error(422, "organization_id is required"), status=422)
        try:
            body = aggregator.usage(organization_id, external_subscription_id)
        except Exception as exc:
            charge = exc.charge_id if isinstance(exc, UsageFailed) else None
            log.error(
                "aggregator.usage_failed organization=%s subscription=%s charge=%s",
                organization_id,
                external_subscription_id,
                charge,
                exc_info=True,
            )
            aggregator.metrics.usage_failures.inc()
            return view.json(_error(500, "usage_failed"), status=500)
        if body is None:
            return view.json(_error(404, "subscription_not_found"), status=404)
        return view.json(body)

    routed = app.topic_route(aggregator.events_topic, match_info="external_subscription_id")(
        usage_view
    )
    app.page("/current-usage/{external_subscription_id}")(routed)

    async def ready_view(view: View, request: Request) -> Response:
        ready = aggregator.ready()
        body = {"ready": ready, "partitions": sorted(aggregator.owned_partitions())}
        return view.json(body, status=200 if ready else 503)

    app.page("/ready")(ready_view)

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Recovery is about to change the marker segments and the progress held here.
        aggregator.generation += 1
        aggregator.markers.invalidate()
        aggregator.forget_progress()

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        aggregator.generation += 1

    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app, aggregator


_REASONS = {404: "Not Found", 422: "Unprocessable Entity", 500: "Internal Server Error"}


def _error(status: int, code: str) -> dict[str, Any]:
    return {
        "status": status,
        "error": _REASONS[status],
        "code": code,
        "error_details": {},
    }
