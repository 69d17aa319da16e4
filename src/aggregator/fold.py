"""Folding new events into their ledgers: each event's period and bucket decided at once,
its values gathered per aggregation state and added when the batch ends, one call a state.
Once an event of a (ledger, metric code) has been placed, the next ones of that code whose
instant falls in the same span take the same place without deciding again (a `Lane`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from aggregator.catalog_view import SubscriptionTerms
from aggregator.domain import Domain, UsageEvent, UsageState, ValueReader
from aggregator.ledger import LATE, PERIODS, Ledger
from aggregator.markers import expiry_day
from aggregator.sharded import ShardedDict
from billing.errors import BillingError, InvalidEvent

if TYPE_CHECKING:
    from aggregator.processing import Windows

log = logging.getLogger(__name__)

# The catalog states `terminated_at` to the second, as Lago's API writes it: the events of
# the second it names (stamped before the DELETE, within that second) count in the final
# period rather than being refused as after the termination.
TERMINATION_RESOLUTION = timedelta(seconds=1)


class PeriodCache:
    """The last billing period found per subscription: most events of a batch fall in the
    same period, and finding one costs more than the rest of folding an event. Terms are
    rebuilt whenever the catalog changes, so a cached period never outlives its terms."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self._last: ShardedDict[tuple[SubscriptionTerms, datetime, datetime]] = ShardedDict()

    def find(self, terms: SubscriptionTerms, instant: datetime) -> tuple[datetime, datetime]:
        cached = self._last.get(terms.subscription_id)
        if cached is not None and cached[0] is terms and cached[1] <= instant < cached[2]:
            return cached[1], cached[2]
        start, end = self.domain.period(terms, instant)
        self._last[terms.subscription_id] = (terms, start, end)
        return start, end


@dataclass(slots=True)
class Lane:
    """Where a (ledger, metric code)'s events go while their instant stays in [low, high):
    inside the period the lane was opened for, not before the subscription started and
    not after its termination, every rule of `Fold.event` decides as it did for the event
    that opened it (the closed period bound and `now` do not move during a fold). `reads`
    holds, per charge of the code, the aggregation's value reader with its field, and the
    queue the value goes to."""

    terms: SubscriptionTerms
    low: datetime
    high: datetime
    outcome: str
    day: int
    reads: list[tuple[ValueReader, str, list[tuple[Any, datetime, str]]]]


class Fold:
    """The folding of one batch (or of a ledger's held events) at `now`.

    `event` decides where a new event goes and queues its values; `apply` adds each
    state's queue in one `Domain.add_many` call. Nothing reads a state in between (the
    decisions depend on the ledger and the catalog, never on totals), so the states end as
    if each event had been added at once.
    """

    def __init__(self, domain: Domain, periods: PeriodCache, windows: Windows, now: datetime):
        self.domain = domain
        self.periods = periods
        self.windows = windows
        self.now = now
        self.keep_until = now + windows.late
        self.keep_day = expiry_day(self.keep_until)
        self._period_days: dict[datetime, int] = {}
        # (id(ledger), bucket, period start, charge id) -> the state and its events to add,
        # as (value, timestamp, transaction id). The ledger outlives the fold (the batch
        # holds it), so its id is not reused meanwhile.
        self._additions: dict[
            tuple[int, str, datetime, str], tuple[UsageState, list[tuple[Any, datetime, str]]]
        ] = {}
        # ledger -> metric code -> its lane (two lookups: no key tuple built per event;
        # a Ledger hashes by identity)
        self._lanes: dict[Ledger, dict[str, Lane]] = {}

    def event(self, ledger: Ledger, terms: SubscriptionTerms, event: UsageEvent) -> tuple[str, int]:
        """Fold one new event into its period (or the late bucket).

        Returns the outcome (`applied`, `late` or `dead_letter:<reason>`) and the expiry
        day of the event's dedupe marker (`aggregator.markers.expiry_day`).
        """
        instant = event.timestamp
        lanes = self._lanes.get(ledger)
        lane = None if lanes is None else lanes.get(event.code)
        if lane is None or lane.terms is not terms or not lane.low <= instant < lane.high:
            return self._place(ledger, terms, event)
        reads = lane.reads
        if len(reads) == 1:  # one charge per metric: no value to hold back
            read, field_name, queue = reads[0]
            try:
                value = read(event.properties, field_name)
            except InvalidEvent:
                return "dead_letter:invalid_property", self.keep_day
            queue.append((value, instant, event.transaction_id))
            return lane.outcome, lane.day
        try:
            values = [read(event.properties, field_name) for read, field_name, _ in reads]
        except InvalidEvent:
            return "dead_letter:invalid_property", self.keep_day
        for (_, _, queue), value in zip(reads, values, strict=True):
            queue.append((value, instant, event.transaction_id))
        return lane.outcome, lane.day

    def _place(
        self, ledger: Ledger, terms: SubscriptionTerms, event: UsageEvent
    ) -> tuple[str, int]:
        """`event` by every rule, then a lane for the events of its code that follow."""
        charges = terms.charges_for_metric(event.code)
        if not charges:
            return "dead_letter:no_charge_for_code", self.keep_day
        instant = event.timestamp
        if instant < terms.subscription_at:
            return "dead_letter:before_subscription_start", self.keep_day
        if (
            terms.terminated_at is not None
            and instant >= terms.terminated_at + TERMINATION_RESOLUTION
        ):
            return "dead_letter:after_termination", self.keep_day
        try:
            start, end = self.periods.find(terms, instant)
        except BillingError as exc:
            log.warning(
                "aggregator.period_failed subscription=%s error=%r", terms.subscription_id, exc
            )
            return "dead_letter:no_billing_period", self.keep_day
        bucket = PERIODS
        # (the raw value first: most ledgers have closed nothing yet)
        if ledger.value["closed_until"] is not None and start < cast(datetime, ledger.closed_until):
            if self.now - end > self.windows.late:
                return "dead_letter:too_late", self.keep_day
            bucket = LATE
        domain = self.domain
        readers = [(domain.value_reader(charge), charge.field_name or "") for charge in charges]
        try:
            values = [read(event.properties, field_name) for read, field_name in readers]
        except InvalidEvent:
            return "dead_letter:invalid_property", self.keep_day
        additions = self._additions
        reads = []
        for charge, (read, field_name), value in zip(charges, readers, values, strict=True):
            ident = (id(ledger), bucket, start, charge.charge_id)
            queued = additions.get(ident)
            if queued is None:
                state = ledger.state(domain, bucket, start, end, charge)
                queued = additions[ident] = (state, [])
            queued[1].append((value, instant, event.transaction_id))
            reads.append((read, field_name, queued[1]))
        if bucket == LATE:
            outcome, day = "late", self.keep_day
        else:
            outcome, day = "applied", self._expiry_day(end)
        low = max(start, terms.subscription_at)
        high = end
        if terms.terminated_at is not None:
            high = min(end, terms.terminated_at + TERMINATION_RESOLUTION)
        lanes = self._lanes.get(ledger)
        if lanes is None:
            lanes = self._lanes[ledger] = {}
        lanes[event.code] = Lane(terms, low, high, outcome, day, reads)
        return outcome, day

    def _expiry_day(self, end: datetime) -> int:
        """The expiry day of the markers of events in a period ending at `end`."""
        day = self._period_days.get(end)
        if day is None:
            kept = max(self.keep_until, end + self.windows.skew + self.windows.late)
            day = self._period_days[end] = expiry_day(kept)
        return day

    def apply(self) -> None:
        """Add every queued event to its state."""
        for state, events in self._additions.values():
            self.domain.add_many(state, events)
        self._additions.clear()
        self._lanes.clear()
