"""Sending what ledgers' outboxes hold once the ledgers are durable, and forgetting what the
broker acknowledged: each ledger rewritten without it (the stream's messages, whatever a
seed finds unsent), or, for a slice of the period closer's, one record of the slice's epoch
(`aggregator.outbox_acks`)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

import orjson

from aggregator.ledger import Ledger
from aggregator.processing import PERIODS_CLOSED

if TYPE_CHECKING:
    from aggregator.app import Aggregator

log = logging.getLogger(__name__)

# Ledgers whose outbox is sent, or emptied, between two yields to the event loop: at a
# million periods closed at once, a slice's 500 sends and 500 rewrites in one go held the
# loop for over 100 ms of CPU on a loaded machine (issue 15).
YIELD_EVERY = 100
# METERFLOW_AGGREGATOR_FAULT values that end the worker at one step of the closer's second
# sending slice (crash tests of `aggregator.outbox_acks`).
SENDING_FAULTS = ("exit_before_close_sent", "exit_after_close_sent", "exit_after_sent_record")


class OutboxSender:
    def __init__(self, worker: Aggregator) -> None:
        self.worker = worker
        self._lock = asyncio.Lock()
        self._epochs_sent = 0

    async def flush(
        self,
        ledgers: dict[str, tuple[int, dict[str, Any]]],
        epoch: tuple[int, int] | None = None,
    ) -> None:
        """Send what the outboxes of `ledgers` hold, then forget what the broker acknowledged.

        `ledgers` are values the caller just wrote, by key: (partition, value). They are
        made durable first (a message never leaves before the state change that produced it
        could survive a crash), and not read back: a value the stream changed since holds at
        least these messages, and its new ones are the stream's to send, once durable.
        `epoch` (partition, epoch): the closer's slice that wrote them; its messages are
        then forgotten by one record, the others by rewriting their ledgers."""
        worker = self.worker
        await worker.flush_tables()
        if not ledgers:
            return
        async with self._lock:
            generation = worker.generation
            self._fault("exit_before_close_sent", epoch)
            rewrite: dict[str, tuple[int, set[int]]] = {}
            futures = []
            for n, (key, (partition, value)) in enumerate(ledgers.items()):
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # (a bound on the loop's time, see YIELD_EVERY)
                messages = worker.outbox_acks.unsent(partition, value["outbox"])
                if not messages:
                    continue
                if epoch is None or any(m.get("e") != epoch[1] for m in messages):
                    rewrite[key] = (partition, {message["id"] for message in messages})
                for message in messages:
                    futures.append(await self._send(message))
            await asyncio.gather(*futures)
            if generation != worker.generation or not worker.recovered():
                # Partitions moved (or are being restored) while we awaited: the table may
                # not hold these ledgers, or hold them half restored, and writing would
                # replace the owner's. Whoever owns them sends the outbox again, hence
                # `period_key`.
                return
            self._fault("exit_after_close_sent", epoch)
            for n, (key, (partition, ids)) in enumerate(rewrite.items()):
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                    if generation != worker.generation or not worker.recovered():
                        return  # (as above)
                # Read again: the stream may have changed the ledger while we awaited.
                stored = worker.ledgers.get(key, partition)
                if stored is None:
                    continue
                ledger = Ledger(stored, partition)
                ledger.forget_sent(ids)
                worker.outbox_acks.prune(ledger)
                worker.ledgers.put(partition, key, ledger.seal())
            if epoch is not None:
                worker.outbox_acks.acknowledged(*epoch)
                await worker.progress_table.flush()
            await worker.flush_tables()
            self._fault("exit_after_sent_record", epoch)

    async def _send(self, message: dict[str, Any]) -> Any:
        worker = self.worker
        topics = worker.settings.topics
        topic = topics.periods_closed if message["topic"] == PERIODS_CLOSED else topics.dead_letter
        return await worker.app.producer.send(
            topic, message["key"].encode(), orjson.dumps(message["value"]), None, None, None
        )

    def _fault(self, name: str, epoch: tuple[int, int] | None) -> None:
        """Crash tests: end the worker at step `name` of the closer's second sending slice."""
        fault = self.worker.agg.fault
        if epoch is None or fault not in SENDING_FAULTS:
            return
        if name == SENDING_FAULTS[0]:
            self._epochs_sent += 1
        if fault == name and self._epochs_sent == 2:
            log.critical("aggregator.fault %s: exiting", name)
            logging.shutdown()
            os._exit(70)
