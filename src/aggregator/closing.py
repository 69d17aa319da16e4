"""Closing billing periods when the stream has passed them, and the housekeeping that rides
on it: releasing or dead-lettering held events, sending late usage, expiring dedupe markers.

When a period closes (issue 11: driven by the stream, not by a fixed hour):

- a period that ends at `end` closes once the watermark of its subscription's events
  partition (`aggregator.watermark`: every event the broker accepted before that instant is
  applied) has reached `end + clock_skew`. Each subscription's events live on one partition,
  so its own partition's watermark is the one that matters; an idle partition is caught up
  at once. `clock_skew` (METERFLOW_AGGREGATOR_CLOCK_SKEW, 5 s by default) is the allowance
  for producers whose clocks or requests trail: an event stamped before the end and accepted
  after the close is late usage, which the invoicer turns into a draft refresh (the
  `invoice_grace_period`) or an adjustment on the next invoice, never lost;
- a termination closes the subscription's last period (ending at `terminated_at`) as soon as
  the watermark has reached both `terminated_at` and the instant this worker saw the
  termination in the catalog: every event accepted before the termination is then applied.

Faust's `on_window_close` is not used: it drops callbacks for all but one partition. Work is
driven by a schedule (`aggregator.schedule`): each subscription is visited when its next
close, held-event expiry or late usage is due, so a tick costs what is due, not what is held.
A visit computes the subscription's next due time itself.

A close is written to the ledger's outbox in the same record that removes the period's
totals and advances `closed_until`; the message leaves the outbox only once the broker has
it. A crash in between sends it again: `period_key` lets the invoicer ignore the repeat.

Late usage (events of a period already closed, the ledger's `late` bucket) is not held for
the next close: the subscription is visited at once and sends it as its own `late_usage`
message, one per late period, written to the outbox in the same record that empties the
bucket. Its `late_key` (the period's key and the outbox id, unique within the ledger) lets
the invoicer apply it once, however often it is sent. Late usage already in the bucket when
the next period closes in the same visit rides along with that close as `adjustments`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aggregator.catalog_view import SubscriptionTerms
from aggregator.domain import Domain
from aggregator.ledger import Ledger, instant, iso, ledger_key
from aggregator.processing import (
    DEAD_LETTER,
    PERIODS_CLOSED,
    EventProcessor,
    held_dead_letter,
)
from aggregator.schedule import CloseSchedule
from meterflow.event_records import partition_for

# A subscription far behind (say, created years back) catches up a bounded number of
# periods per visit (then is due again at once), so one visit never stalls the stream.
MAX_CLOSES_PER_VISIT = 100
# A visit that failed is tried again this much later (watermark seconds).
RETRY_AFTER = 60.0

LATE_USAGE = "late_usage"

log = logging.getLogger(__name__)


def _period_fields(
    terms: SubscriptionTerms, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """What a closed-period and a late-usage message both say of their period."""
    return {
        "period_key": period_key(terms.subscription_id, start),
        "organization_id": terms.organization_id,
        "subscription_id": terms.subscription_id,
        "external_subscription_id": terms.external_subscription_id,
        "external_customer_id": terms.external_customer_id,
        "plan_code": terms.plan_code,
        "currency": terms.currency,
        "period_start": iso(start),
        "period_end": iso(end),
        "closed_at": iso(now),
    }


def period_key(subscription_id: str, start: datetime) -> str:
    """The deterministic identity of a closed period, for the invoicer's unique constraint."""
    return f"{subscription_id}:{start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def charge_totals(
    domain: Domain,
    terms: SubscriptionTerms,
    start: datetime,
    end: datetime,
    charges: dict[str, Any],
) -> list[dict[str, Any]]:
    """Final totals of every charge of the plan (zero for one without events)."""
    totals = []
    for charge in terms.charges:
        state = domain.new_state(charge, start, end, charges.get(charge.charge_id))
        totals.append(
            {
                "charge_id": charge.charge_id,
                "charge_model": charge.charge_model,
                "billable_metric_id": charge.metric_id,
                "billable_metric_code": charge.metric_code,
                "aggregation_type": charge.aggregation_type,
                "units": str(state.result()),
                "events_count": state.events_count,
                "aggregation": state.to_dict(),
            }
        )
    return totals


class PeriodCloser:
    """Visits of due subscriptions (pure: no I/O); the app drives it from watermarks."""

    def __init__(self, processor: EventProcessor, partitions: int) -> None:
        # The processor's parts: released held events are folded through the processor.
        self.processor = processor
        self.domain, self.catalog = processor.domain, processor.catalog
        self.ledgers, self.markers = processor.ledgers, processor.markers
        self.windows = processor.windows
        self.partitions = partitions
        self.schedule = CloseSchedule()
        # Ledgers visited with messages in their outbox, by key: (partition, value as
        # written), for the sender to take (`take_outboxes`) instead of reading them back.
        self.outboxes: dict[str, tuple[int, dict[str, Any]]] = {}

    def plan(
        self, organization_id: str, external_id: str, due: float, partition: int | None = None
    ) -> None:
        """Visit the subscription once its partition's watermark reaches `due` (`partition`:
        its events partition, when the caller already hashed its id). The schedule keeps
        the strings it is given (see `aggregator.schedule`): the organization's id as the
        catalog view holds it, interned, not a record's copy."""
        if partition is None:
            partition = partition_for(external_id.encode(), self.partitions)
        self.schedule.at(partition, sys.intern(organization_id), external_id, due)

    def plan_ledger(self, partition: int, key: str, due: float) -> None:
        """Visit the subscription of a ledger (its key) once `partition`'s watermark reaches
        `due`."""
        organization_id, external_id = key.split("\x1f", 1)
        self.schedule.at(partition, sys.intern(organization_id), external_id, due)

    def run_due(
        self,
        partition: int,
        watermark: float,
        now: datetime,
        counts: Counter[str],
        limit: int,
        seconds: float | None = None,
    ) -> list[tuple[str, str]]:
        """Visit up to `limit` subscriptions of the partition due by `watermark`, and for at
        most about `seconds` (the rest stay due); returns those visited (organization id,
        external id)."""
        found = self.schedule.pop_due(partition, watermark, limit)
        deadline = None if seconds is None else time.perf_counter() + seconds
        for done, (organization_id, external_id) in enumerate(found):
            if deadline is not None and time.perf_counter() > deadline:
                for left in found[done:]:  # not visited: due again, as they were
                    self.schedule.at(partition, *left, watermark)
                return found[:done]
            try:
                due = self.visit(organization_id, external_id, partition, watermark, now, counts)
            except Exception:  # one subscription's bug must not stop the others closing
                log.exception(
                    "aggregator.visit_failed organization=%s subscription=%r",
                    organization_id,
                    external_id,
                )
                counts["visit_failed"] += 1
                due = watermark + RETRY_AFTER
            if due is not None:  # (the schedule's own strings: see aggregator.schedule)
                self.schedule.at(partition, organization_id, external_id, due)
        return found

    def visit(
        self,
        organization_id: str,
        external_id: str,
        partition: int,
        watermark: float,
        now: datetime,
        counts: Counter[str],
    ) -> float | None:
        """Do what is due for one subscription; returns when it is due next (or None)."""
        key = ledger_key(organization_id, external_id)
        terms = self.catalog.terms(organization_id, external_id)
        value = self.ledgers.get(key, partition)
        if terms is None and value is None:
            return None
        ledger = Ledger(value, partition)
        changed = False
        if terms is not None:
            if ledger.value["held"]:
                self.processor.release_held(ledger, terms, now, counts)
                changed = True
            changed |= self.close_due(ledger, terms, watermark, now, counts)
            if ledger.value["late"]:
                self._emit_late(ledger, terms, now)
                changed = True
        if ledger.value["held"]:
            changed |= self._expire_held(ledger, watermark, counts)
        if changed:
            self.ledgers.put(partition, key, ledger.seal())
        if ledger.value["outbox"]:
            self.outboxes[key] = (partition, ledger.value)
        return self.next_due(ledger, terms)

    def take_outboxes(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """The ledgers with an outbox visited since the last call (see `outboxes`)."""
        taken, self.outboxes = self.outboxes, {}
        return taken

    def _close_at(
        self, terms: SubscriptionTerms, start: datetime, end: datetime
    ) -> tuple[datetime, bool, float]:
        """(end, whether it is the termination period, when the watermark must reach) of the
        period [start, end) as the subscription's termination clips it."""
        terminated = terms.terminated_at
        if terminated is not None and terminated <= end:
            seen = self.catalog.termination_seen(
                terms.organization_id, terms.external_subscription_id
            )
            clipped = max(terminated, start)
            return clipped, True, max(clipped.timestamp(), seen)
        return end, False, (end + self.windows.skew).timestamp()

    def close_due(
        self,
        ledger: Ledger,
        terms: SubscriptionTerms,
        watermark: float,
        now: datetime,
        counts: Counter[str],
    ) -> bool:
        """Close every period of the subscription the watermark has passed."""
        if ledger.value["final"]:
            return False
        cursor = ledger.closed_until or terms.subscription_at
        closed = 0
        while closed < MAX_CLOSES_PER_VISIT:
            start, end = self.domain.period(terms, cursor)
            if terms.terminated_at is not None and terms.terminated_at <= start:
                # Its last period is closed, or it ended the instant it began (created and
                # deleted within a second): a period of no time has nothing to bill.
                ledger.value["final"] = True
                return True
            end, final, due = self._close_at(terms, start, end)
            if due > watermark:
                break
            self._emit_close(ledger, terms, start, end, final, now)
            counts["period_closed"] += 1
            closed += 1
            if final:
                ledger.value["final"] = True
                break
            cursor = end
        return closed > 0

    def next_due(self, ledger: Ledger, terms: SubscriptionTerms | None) -> float | None:
        """When the subscription next needs a visit: its next close, the expiry of its
        oldest held event, or at once for late usage to send."""
        due: list[float] = []
        if terms is not None:
            if ledger.value["late"]:
                due.append(0.0)
            if not ledger.value["final"]:
                start, end = self.domain.period(terms, ledger.closed_until or terms.subscription_at)
                due.append(self._close_at(terms, start, end)[2])
        held = ledger.value["held"]
        if held:
            due.append(min(h["ts"] for h in held) / 1000 + self.windows.hold.total_seconds())
        return min(due) if due else None

    def _emit_close(
        self,
        ledger: Ledger,
        terms: SubscriptionTerms,
        start: datetime,
        end: datetime,
        final: bool,
        now: datetime,
    ) -> None:
        period = ledger.value["periods"].pop(iso(start), None)
        adjustments = [
            {
                "period_start": iso(instant(late_start)),
                "period_end": late["end"],
                "charges": charge_totals(
                    self.domain,
                    terms,
                    instant(late_start),
                    instant(late["end"]),
                    late["charges"],
                ),
            }
            for late_start, late in sorted(ledger.value["late"].items())
        ]
        ledger.value["late"] = {}
        ledger.value["closed_until"] = iso(end)
        ledger.enqueue(
            PERIODS_CLOSED,
            terms.external_subscription_id,
            {
                "type": "period_closed",
                **_period_fields(terms, start, end, now),
                "terminated": final,
                "charges": charge_totals(
                    self.domain, terms, start, end, {} if period is None else period["charges"]
                ),
                "adjustments": adjustments,
            },
        )

    def _emit_late(self, ledger: Ledger, terms: SubscriptionTerms, now: datetime) -> None:
        """Send the late usage of each closed period as its own message, and empty the bucket.

        The message has the closed-period message's shape (`charges` as totals of the late
        events alone), with `type` and a `late_key` unique within the ledger: the outbox id
        it is written under, which a resend of the outbox keeps."""
        for late_start, late in sorted(ledger.value["late"].items()):
            start, end = instant(late_start), instant(late["end"])
            key = period_key(terms.subscription_id, start)
            late_key = f"{key}:late:{ledger.value['seq'] + 1}"
            ledger.enqueue(
                PERIODS_CLOSED,
                terms.external_subscription_id,
                {
                    "type": LATE_USAGE,
                    "late_key": late_key,
                    **_period_fields(terms, start, end, now),
                    "charges": charge_totals(self.domain, terms, start, end, late["charges"]),
                },
            )
            log.info(
                "aggregator.late_usage_sent subscription=%s late_key=%s",
                terms.external_subscription_id,
                late_key,
            )
        ledger.value["late"] = {}

    def _expire_held(self, ledger: Ledger, watermark: float, counts: Counter[str]) -> bool:
        """Dead-letter the held events older than the hold window."""
        cutoff_ms = (watermark - self.windows.hold.total_seconds()) * 1000
        keep = []
        for item in ledger.value["held"]:
            if item["ts"] > cutoff_ms:
                keep.append(item)
                continue
            ledger.enqueue(
                DEAD_LETTER,
                item["key"] or "",
                held_dead_letter(item, "unknown_subscription", "hold window passed"),
            )
            counts["dead_letter:unknown_subscription"] += 1
        changed = len(keep) != len(ledger.value["held"])
        ledger.value["held"] = keep
        return changed

    def expire_markers(self, now: datetime, owned: set[int], counts: Counter[str]) -> bool:
        """Expire one slice of the dedupe markers due; True while more are due."""
        expired, more = self.markers.expire(now, owned)
        if expired:
            counts["marker_expired"] += expired
        return more
