"""Which of the period closer's outbox messages the broker has: one record per partition and
slice in the `progress` table, instead of every closed ledger written a second time to
empty its outbox (issue 15: a record, a RocksDB read and a write less per close).

How it stays exactly once (a message is sent at least once; `period_key` and `late_key` let
the invoicer ignore a repeat):

- every message a slice of the closer's visits writes into an outbox is tagged with that
  slice's epoch `e`, a number per partition above every epoch used there before (above the
  recorded one, and above every tag the seed found in the partition's ledgers);
- once the broker acknowledged every message of the slice, `o<partition>` = {"sent": e}
  says: each message tagged `e` or below on that partition is acknowledged. It is true
  because a worker's slices run one after another, each only once the one before was
  acknowledged; a slice that failed makes the closer seed again (`ClosingDriver.run`); and a
  seed (every assignment, every start) first sends, by the old way (each ledger rewritten
  without what was acknowledged), every message above the record, before any new epoch;
- a message tagged at or below the record is not sent again and is dropped from its outbox
  at the ledger's next write by the closer (`prune`); one without a tag (the stream's dead
  letters) leaves its outbox the old way only.

The record is written only after the acknowledgement it vouches for, and a crash that loses
it only means the seed sends those messages again.
"""

from __future__ import annotations

from typing import Any

from aggregator.ledger import Ledger
from aggregator.store import PartitionedStore


def sent_key(partition: int) -> str:
    return f"o{partition}"


class OutboxAcks:
    def __init__(self, table: PartitionedStore) -> None:
        self.table = table
        self._sent: dict[int, int] = {}  # per partition: every epoch up to it acknowledged
        self._next: dict[int, int] = {}  # per partition: the lowest epoch not yet used

    def sent(self, partition: int) -> int:
        found = self._sent.get(partition)
        if found is None:
            stored = self.table.get(sent_key(partition))
            found = self._sent[partition] = 0 if stored is None else int(stored["sent"])
        return found

    def unsent(self, partition: int, outbox: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages of `outbox` the broker may not have (an untagged one: any)."""
        if not outbox:
            return outbox
        sent = self.sent(partition)
        return [m for m in outbox if m.get("e", sent + 1) > sent]

    def prune(self, ledger: Ledger) -> None:
        """Drop what the broker has from the ledger's outbox (written with its next change)."""
        outbox = ledger.value["outbox"]
        if outbox:
            ledger.value["outbox"] = self.unsent(ledger.partition, outbox)

    def seen(self, partition: int, outbox: list[dict[str, Any]]) -> None:
        """A seed found these messages in a ledger: new epochs go above their tags."""
        for message in outbox:
            epoch = message.get("e")
            if epoch is not None and epoch >= self._next.get(partition, 0):
                self._next[partition] = epoch + 1

    def next_epoch(self, partition: int) -> int:
        epoch = max(self._next.get(partition, 0), self.sent(partition) + 1)
        self._next[partition] = epoch + 1
        return epoch

    def acknowledged(self, partition: int, epoch: int) -> None:
        """Every message tagged `epoch` or below on the partition is acknowledged: record it
        (queued in the table; the caller flushes it)."""
        if epoch > self.sent(partition):
            self._sent[partition] = epoch
            self.table.put(partition, sent_key(partition), {"sent": epoch})

    def forget(self) -> None:
        """Partitions moved: read the records again, and take epochs from the next seed."""
        self._sent.clear()
        self._next.clear()
