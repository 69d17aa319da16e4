"""Folding new events into their ledgers: each event's period and bucket decided at once,
its values gathered per aggregation state and added when the batch ends, one call a state."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from aggregator.catalog_view import SubscriptionTerms
from aggregator.domain import Domain, UsageEvent, UsageState
from aggregator.ledger import LATE, PERIODS, Ledger
from aggregator.markers import expiry_day
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
        self._last: dict[str, tuple[SubscriptionTerms, datetime, datetime]] = {}

    def find(self, terms: SubscriptionTerms, instant: datetime) -> tuple[datetime, datetime]:
        cached = self._last.get(terms.subscription_id)
        if cached is not None and cached[0] is terms and cached[1] <= instant < cached[2]:
            return cached[1], cached[2]
        start, end = self.domain.period(terms, instant)
        self._last[terms.subscription_id] = (terms, start, end)
        return start, end


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

    def event(self, ledger: Ledger, terms: SubscriptionTerms, event: UsageEvent) -> tuple[str, int]:
        """Fold one new event into its period (or the late bucket).

        Returns the outcome (`applied`, `late` or `dead_letter:<reason>`) and the expiry
        day of the event's dedupe marker (`aggregator.markers.expiry_day`).
        """
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
        try:
            values = [domain.value_of(charge, event) for charge in charges]
        except InvalidEvent:
            return "dead_letter:invalid_property", self.keep_day
        additions = self._additions
        added = (None, instant, event.transaction_id)
        for charge, value in zip(charges, values, strict=True):
            ident = (id(ledger), bucket, start, charge.charge_id)
            queued = additions.get(ident)
            if queued is None:
                state = ledger.state(domain, bucket, start, end, charge)
                queued = additions[ident] = (state, [])
            queued[1].append(added if value is None else (value, instant, event.transaction_id))
        if bucket == LATE:
            return "late", self.keep_day
        day = self._period_days.get(end)
        if day is None:
            kept = max(self.keep_until, end + self.windows.skew + self.windows.late)
            day = self._period_days[end] = expiry_day(kept)
        return "applied", day

    def apply(self) -> None:
        """Add every queued event to its state."""
        for state, events in self._additions.values():
            self.domain.add_many(state, events)
        self._additions.clear()
