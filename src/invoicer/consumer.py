"""The periods-closed consumer: each closed period becomes one invoice, committed in
Postgres before its Kafka offset.

Delivery is at least once (auto-commit off). A message is done when its invoice is in
Postgres, when Postgres already had one for its `period_key` (a redelivery or a replay), or
when it went to the dead-letter topic; only then does its offset commit. Postgres being
unreachable pauses the message's partition with back-off and commits nothing, so a crash or
an outage at any point loses no period and duplicates none.

Partitions run concurrently, each taking its next records once its own are done
(`invoicer.partition_tasks`), and different subscriptions of one partition share rounds;
one subscription's periods stay in order, because late-event adjustments price on top of
the invoices of earlier periods.

A `late_usage` message (events that arrived after their period closed) is applied in one
transaction that records its `late_key` (`invoicer.late_usage.apply_late_usage`): it
refreshes its period's invoice while that is a draft, else waits as pending late usage that
the subscription's next invoice bills as adjustment fees (read with its catalog terms,
`terms.load`, and marked as billed in that invoice's transaction). A repeat of its
key changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from invoicer import late_usage
from invoicer.metrics import InvoicerMetrics
from invoicer.partition_tasks import PartitionTasks
from invoicer.rounds import next_round
from invoicer.settings import InvoicerSettings
from invoicing import terms, write
from invoicing.closed_period import LateUsage, PeriodClosed, parse_message
from invoicing.errors import PoisonMessage
from invoicing.pricing import price_period
from meterflow.settings import Settings
from read_model import drafts

log = logging.getLogger(__name__)

# Failures worth waiting out: the server is down, restarting, refusing connections, or
# a transaction lost a race it can simply run again.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)

# What postpones the draft sweep to its next round.
FINALIZE_RETRIED: tuple[type[BaseException], ...] = (*TRANSIENT, drafts.CreditsChanged)

KILL_AFTER_DB_COMMIT = "kill_after_db_commit"


@dataclass(frozen=True, slots=True, eq=False)
class _Pending:
    """A message of the poll, read, waiting for its round."""

    record: ConsumerRecord[Any, Any]
    message: PeriodClosed | LateUsage


def dead_letter_value(record: ConsumerRecord[Any, Any], reason: str, detail: str) -> bytes:
    """Why, where from, and the original payload untouched (text, else base64)."""
    payload: bytes = record.value or b""
    try:
        text: str | None = payload.decode("utf-8")
        encoded = None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(payload).decode()
    return orjson.dumps(
        {
            "reason": reason,
            "field": None,
            "detail": detail,
            "source": {
                "service": "invoicer",
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
            "payload": text,
            "payload_base64": encoded,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
    )


class Invoicer:
    """Consumes periods-closed until `stop` is set; `start` and `close` own the resources."""

    def __init__(
        self,
        settings: Settings,
        config: InvoicerSettings,
        metrics: InvoicerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics or InvoicerMetrics()
        self.stop = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._pool_lock = asyncio.Lock()
        self._pool_slots = asyncio.Semaphore(config.db_pool_size)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all"
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.settings.topics.periods_closed,
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.batch_size,
        )
        await self._consumer.start()
        log.info(
            "invoicer.started topic=%s group=%s schema=%s",
            self.settings.topics.periods_closed,
            self.config.group_id,
            self.settings.db_schema,
        )

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
        log.info("invoicer.stopped")

    async def _db(self) -> asyncpg.Pool:
        """The pool, created on first need (Postgres may be down when the invoicer starts)."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await write.create_pool(
                    self.settings.dsn,
                    schema=self.settings.db_schema,
                    size=self.config.db_pool_size,
                )
            return self._pool

    async def run(self) -> None:
        """Poll, invoice and commit until `stop` is set; the batch in flight completes."""
        assert self._consumer is not None, "start() first"
        finalizer = asyncio.create_task(self._finalize_loop())
        partitions = PartitionTasks(self._consumer, self._process_partition, self.config.batch_size)
        try:
            while not self.stop.is_set():
                try:
                    await partitions.take()
                except IllegalStateError:
                    pass  # a partition went to another worker meanwhile: take again
                except KafkaError as exc:
                    # The broker is away: nothing was taken, so nothing is lost; poll again.
                    self.metrics.failures.labels("kafka_unavailable").inc()
                    log.warning("invoicer.poll_failed error=%r", exc)
                    await self._sleep(self.config.retry_max)
                    continue
                await partitions.finish_some()
        finally:
            try:
                await partitions.finish_all()
            finally:
                finalizer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finalizer

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> None:
        done: set[int] = set()
        pending: list[_Pending] = []
        for record in records:
            try:
                pending.append(_Pending(record, parse_message(record.value)))
            except PoisonMessage as exc:
                if not await self._dead_letter(record, exc.reason, exc.detail):
                    break
                self._done(done, record)
        while pending:
            plan = next_round([p.message for p in pending], self.config.round_size)
            finished: list[_Pending] = []
            for i in plan.late:
                if not await self._handle_late(pending[i]):
                    break
                finished.append(pending[i])
            else:
                finished += await self._invoice_round([pending[i] for i in plan.closes])
            done.update(item.record.offset for item in finished)
            self.metrics.messages_done.inc(len(finished))
            if self.stop.is_set() and len(finished) < len(plan.late) + len(plan.closes):
                break  # stopped while waiting out a failure: the rest is delivered again
            gone = {id(item) for item in finished}
            pending = [p for p in pending if id(p) not in gone]
        # Commit only the unbroken run of finished offsets: anything after a message that
        # could not finish (stopped mid-outage) is delivered again.
        last = None
        for record in records:
            if record.offset not in done:
                break
            last = record.offset
        if last is not None:
            await self._commit(tp, last + 1)

    def _done(self, done: set[int], record: ConsumerRecord[Any, Any]) -> None:
        self.metrics.messages_done.inc()
        done.add(record.offset)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: offset})
        except (CommitFailedError, KafkaError) as exc:
            # The partition moved to another worker: it redelivers, and the invoices
            # already written make those redeliveries no-ops.
            log.warning("invoicer.commit_failed partition=%s offset=%s error=%r", tp, offset, exc)

    async def _handle_late(self, item: _Pending) -> bool:
        """True once the late usage is applied (or a duplicate, or dead-lettered)."""
        late = item.message
        assert isinstance(late, LateUsage)
        delay = self.config.retry_initial
        while True:
            try:
                await self._apply_late(late)
                return True
            except PoisonMessage as exc:
                return await self._dead_letter(item.record, exc.reason, exc.detail)
            except TRANSIENT as exc:
                self.metrics.failures.labels("database_unavailable").inc()
                log.warning(
                    "invoicer.database_unavailable late_key=%s retry_in=%.1fs error=%r",
                    late.late_key,
                    delay,
                    exc,
                )
            except Exception as exc:
                # A bug or corrupt data: dead-letter it with the reason rather than stall
                # the partition forever or crash the worker.
                log.exception("invoicer.unexpected_error late_key=%s", late.late_key)
                self.metrics.failures.labels("unexpected").inc()
                return await self._dead_letter(item.record, "unexpected_error", repr(exc))
            if not await self._sleep(delay):
                return False
            delay = min(delay * 2, self.config.retry_max)

    async def _invoice_round(self, batch: list[_Pending]) -> list[_Pending]:
        """Invoice a round's closed periods together; returns those done (invoiced, already
        invoiced or dead-lettered). Transient failures and credits changed meanwhile are
        retried (the whole round, read again) until done or asked to stop."""
        delay = self.config.retry_initial
        while batch:
            try:
                return await self._try_round(batch)
            except drafts.CreditsChanged as exc:
                # Another invoice of a customer (or an API call) changed a coupon, a wallet
                # or a credit note after the round was priced: nothing was written; again.
                self.metrics.failures.labels("credits_changed").inc()
                log.info("invoicer.credits_changed invoices=%d detail=%s", len(batch), exc)
                if not await self._sleep(self.config.retry_initial):
                    return []
                continue
            except write.AlreadyInvoiced as exc:
                # A concurrent worker invoiced a period of the round: read it again.
                log.info("invoicer.invoiced_meanwhile invoices=%d detail=%s", len(batch), exc)
                continue
            except TRANSIENT as exc:
                self.metrics.failures.labels("database_unavailable").inc()
                log.warning(
                    "invoicer.database_unavailable invoices=%d retry_in=%.1fs error=%r",
                    len(batch),
                    delay,
                    exc,
                )
            except Exception as exc:
                # A bug or corrupt data: find the message by invoicing each alone, and
                # dead-letter it with the reason rather than stall or crash the worker.
                self.metrics.failures.labels("unexpected").inc()
                if len(batch) > 1:
                    log.warning("invoicer.round_failed invoices=%d error=%r", len(batch), exc)
                    return [done for item in batch for done in await self._invoice_round([item])]
                log.exception(
                    "invoicer.unexpected_error period_key=%s", batch[0].message.period_key
                )
                if await self._dead_letter(batch[0].record, "unexpected_error", repr(exc)):
                    return batch
                return []
            if not await self._sleep(delay):
                return []
            delay = min(delay * 2, self.config.retry_max)
        return []

    async def _sleep(self, seconds: float) -> bool:
        """Wait, unless asked to stop first; False when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return not self.stop.is_set()

    async def _try_round(self, batch: list[_Pending]) -> list[_Pending]:
        """One read for the round, pricing, one write; then dead letters, metrics, logs."""
        started = time.monotonic()
        done: list[_Pending] = []
        poison: list[tuple[_Pending, PoisonMessage]] = []
        written: list[write.InvoiceToWrite] = []
        customers: set[str] = set()
        pool = await self._db()
        async with self._pool_slots, pool.acquire() as conn:
            loaded_all = await terms.load_many(conn, [item.message for item in batch])
            read = time.monotonic()
            for item, loaded in zip(batch, loaded_all, strict=True):
                closed = item.message
                assert isinstance(closed, PeriodClosed)
                if loaded is None:
                    poison.append((item, terms.not_found(closed)))
                    continue
                if loaded.already_invoiced:
                    self.metrics.duplicates.inc()
                    log.debug("invoicer.duplicate period_key=%s", closed.period_key)
                    done.append(item)
                    continue
                if loaded.terms.customer_id in customers:
                    continue  # the customer's next invoice: in the next round
                customers.add(loaded.terms.customer_id)
                if loaded.pending:
                    closed = replace(closed, adjustments=closed.adjustments + loaded.pending)
                try:
                    priced = price_period(closed, loaded.terms, loaded.invoiced)
                except PoisonMessage as exc:
                    poison.append((item, exc))
                    continue
                written.append(write.InvoiceToWrite(closed, loaded, priced, loaded.pending_keys))
                done.append(item)
            priced_at = time.monotonic()
            await write.write_invoices(conn, written)
        if written and self.config.fault == KILL_AFTER_DB_COMMIT:
            log.warning("invoicer.fault_injected fault=%s", KILL_AFTER_DB_COMMIT)
            os.kill(os.getpid(), signal.SIGKILL)
        self._issued(written)
        if written:
            self.metrics.round_invoices.observe(len(written))
            self.metrics.round_seconds.observe(time.monotonic() - started)
            log.info(
                "invoicer.invoices_issued invoices=%d fees=%d round=%d read_s=%.3f price_s=%.3f "
                "write_s=%.3f",
                len(written),
                sum(len(i.priced.fees) for i in written),
                len(batch),
                read - started,
                priced_at - read,
                time.monotonic() - priced_at,
            )
        for item, refused in poison:
            if await self._dead_letter(item.record, refused.reason, refused.detail):
                done.append(item)
        return done

    def _issued(self, written: list[write.InvoiceToWrite]) -> None:
        """Metrics of a round's invoices, each label counted once per round."""
        statuses = Counter(invoice.priced.status for invoice in written)
        fees = Counter(fee.kind.value for invoice in written for fee in invoice.priced.fees)
        cents: Counter[str] = Counter()
        # A round's periods mostly end together: each end's lag is worked out once.
        ends = Counter(invoice.closed.period_end for invoice in written)
        now = time.time()
        for end, count in ends.items():
            lag = max(now - end.timestamp(), 0.0)
            for _ in range(count):
                self.metrics.period_end_to_invoice.observe(lag)
        debug = log.isEnabledFor(logging.DEBUG)
        for invoice in written:
            priced, closed = invoice.priced, invoice.closed
            cents[priced.currency] += priced.totals.total_amount_cents
            if debug:
                log.debug(
                    "invoicer.invoice_issued invoice=%s period_key=%s subscription=%s "
                    "status=%s currency=%s total_amount_cents=%d fees=%d",
                    invoice.invoice_id,
                    closed.period_key,
                    closed.external_subscription_id,
                    priced.status,
                    priced.currency,
                    priced.totals.total_amount_cents,
                    len(priced.fees),
                )
        for status, count in statuses.items():
            self.metrics.invoices_issued.labels(status).inc(count)
        for currency, amount in cents.items():
            self.metrics.invoiced_cents.labels(currency).inc(amount)
        for kind, count in fees.items():
            self.metrics.fees_written.labels(kind).inc(count)

    async def _apply_late(self, late: LateUsage) -> None:
        pool = await self._db()
        async with pool.acquire() as conn:
            loaded = await terms.load(conn, late)
            outcome, invoice_id = await late_usage.apply_late_usage(conn, late, loaded)
        self.metrics.late_usage.labels(outcome).inc()
        log.info(
            "invoicer.late_usage_applied late_key=%s period_key=%s outcome=%s invoice=%s",
            late.late_key,
            late.period_key,
            outcome,
            invoice_id,
        )

    async def _dead_letter(
        self, message: ConsumerRecord[Any, Any], reason: str, detail: str
    ) -> bool:
        assert self._producer is not None
        value = dead_letter_value(message, reason, detail)
        delay = self.config.retry_initial
        while True:
            try:
                await self._producer.send_and_wait(
                    self.settings.topics.dead_letter, value, key=message.key
                )
                break
            except KafkaError as exc:
                log.warning("invoicer.dead_letter_failed reason=%s error=%r", reason, exc)
                if not await self._sleep(delay):
                    return False
                delay = min(delay * 2, self.config.retry_max)
        self.metrics.dead_lettered.labels(reason).inc()
        log.error(
            "invoicer.dead_lettered reason=%s detail=%s partition=%d offset=%d",
            reason,
            detail,
            message.partition,
            message.offset,
        )
        return True

    async def _finalize_loop(self) -> None:
        while not self.stop.is_set():
            await self.finalize_due_drafts()
            await self._sleep(self.config.finalize_interval)

    async def finalize_due_drafts(self, now: datetime | None = None) -> int:
        """Finalize every draft whose grace period has ended, each in its own transaction
        with the prepaid credits it consumes; returns how many."""
        instant = now or datetime.now(UTC)
        done = 0
        try:
            pool = await self._db()
            async with pool.acquire() as conn:
                for invoice_id in await drafts.due_drafts(conn, instant):
                    row = await drafts.finalize_draft(conn, invoice_id, instant)
                    if row is None:
                        continue
                    done += 1
                    self.metrics.finalized.inc()
                    log.info(
                        "invoicer.draft_finalized invoice=%s prepaid_credit_amount_cents=%d",
                        row["id"],
                        row["prepaid_credit_amount_cents"],
                    )
        except FINALIZE_RETRIED as exc:
            log.warning("invoicer.finalize_postponed error=%r", exc)
        return done
