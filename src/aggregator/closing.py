"""Closing billing periods on the aggregator's own timer, and the housekeeping that rides on
it: releasing or dead-lettering held events, expiring dedupe markers.

Faust's `on_window_close` is not used: it drops callbacks for all but one partition. The
timer instead walks every subscription of the catalog whose events partition this worker
owns, so a period without any event closes too, and closes every period whose end plus the
grace period has passed (the termination period ends at `terminated_at`).

A close is written to the ledger's outbox in the same record that removes the period's
totals and advances `closed_until`; the message leaves the outbox only once the broker has
it. A crash in between sends it again: `period_key` lets the invoicer ignore the repeat.

Late usage (events of a period already closed, the ledger's `late` bucket) is not held for
the next close: each tick sends it as its own `late_usage` message, one per late period,
written to the outbox in the same record that empties the bucket. Its `late_key` (the
period's key and the outbox id, unique within the ledger) lets the invoicer apply it once,
however often it is sent. Late usage already in the bucket when the next period closes in
the same tick rides along with that close as `adjustments`, as before.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aggregator.catalog_view import CatalogView, SubscriptionTerms
from aggregator.domain import Domain
from aggregator.ledger import Ledger, instant, iso, ledger_key
from aggregator.markers import DedupeMarkers
from aggregator.processing import (
    DEAD_LETTER,
    PERIODS_CLOSED,
    EventProcessor,
    Windows,
    held_dead_letter,
)
from aggregator.store import PartitionedStore
from meterflow.event_records import partition_for

# A subscription far behind (say, created years back) catches up a bounded number of
# periods per tick, so one tick never stalls the event stream for long.
MAX_CLOSES_PER_TICK = 100

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
    """One tick of the timer over the subscriptions this worker owns (pure: no I/O)."""

    def __init__(
        self,
        domain: Domain,
        catalog: CatalogView,
        ledgers: PartitionedStore,
        markers: DedupeMarkers,
        processor: EventProcessor,
        windows: Windows,
        partitions: int,
    ) -> None:
        self.domain = domain
        self.catalog = catalog
        self.ledgers = ledgers
        self.markers = markers
        self.processor = processor
        self.windows = windows
        self.partitions = partitions

    def tick(self, now: datetime, owned: set[int]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for organization_id, external_id in self.catalog.subscription_ids():
            partition = partition_for(external_id.encode(), self.partitions)
            if partition not in owned:
                continue
            terms = self.catalog.terms(organization_id, external_id)
            if terms is None:
                continue
            key = ledger_key(organization_id, external_id)
            ledger = Ledger(self.ledgers.get(key), partition)
            changed = False
            if ledger.value["held"]:
                self.processor.release_held(ledger, terms, now, counts)
                ledger.seal()
                changed = True
            if self.close_due(ledger, terms, now, counts):
                changed = True
            if ledger.value["late"]:
                self._emit_late(ledger, terms, now)
                changed = True
            if changed:
                self.ledgers.put(partition, key, ledger.seal())
        self._expire_held(now, owned, counts)
        self._expire_markers(now, owned, counts)
        return counts

    def close_due(
        self, ledger: Ledger, terms: SubscriptionTerms, now: datetime, counts: Counter[str]
    ) -> bool:
        """Close every period of the subscription whose end plus grace has passed."""
        if ledger.value["final"]:
            return False
        cursor = ledger.closed_until or terms.subscription_at
        closed = 0
        while closed < MAX_CLOSES_PER_TICK:
            start, end = self.domain.period(terms, cursor)
            final = False
            if terms.terminated_at is not None and terms.terminated_at <= end:
                if terms.terminated_at <= start and ledger.closed_until is not None:
                    ledger.value["final"] = True
                    return closed > 0 or True
                end, final = max(terms.terminated_at, start), True
            if end + self.windows.close_grace > now:
                break
            self._emit_close(ledger, terms, start, end, final, now)
            counts["period_closed"] += 1
            closed += 1
            if final:
                ledger.value["final"] = True
                break
            cursor = end
        return closed > 0

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

    def _expire_held(self, now: datetime, owned: set[int], counts: Counter[str]) -> None:
        cutoff_ms = (now - self.windows.hold).timestamp() * 1000
        for key, value in self.ledgers.items():
            if not value["held"] or value["p"] not in owned:
                continue
            if all(h["ts"] > cutoff_ms for h in value["held"]):
                continue
            ledger = Ledger(value, value["p"])
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
            ledger.value["held"] = keep
            self.ledgers.put(ledger.partition, key, ledger.seal())

    def _expire_markers(self, now: datetime, owned: set[int], counts: Counter[str]) -> None:
        expired = self.markers.expire(now, owned)
        if expired:
            counts["marker_expired"] += expired
