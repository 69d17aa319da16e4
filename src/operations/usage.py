"""Scratch usage: events of the events topic folded into fresh aggregation states per
(subscription, charge, billing period), under the same rules as the live pipeline (first
transaction_id wins, events outside the subscription or without a charge are not counted),
never touching the live totals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from billing.aggregations import AGGREGATIONS, Aggregation
from billing.charge_models import charge_state
from billing.errors import BillingError
from billing.events import parse_event
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    period_containing,
    resolve_timezone,
)
from meterflow.event_records import decode_record
from operations.terms import ChargeTerms, Terms

# (subscription id, charge id, period start)
UsageKey = tuple[str, str, datetime]


@dataclass
class ChargeUsage:
    """The scratch state of one charge of one subscription in one period."""

    terms: Terms
    charge: ChargeTerms
    period: BillingPeriod
    state: Aggregation


def period_of(terms: Terms, instant: datetime) -> BillingPeriod:
    """The subscription's period containing `instant`, cut at its termination."""
    found = period_containing(
        instant,
        subscription_at=terms.subscription_at,
        interval=PlanInterval(terms.interval),
        billing_time=BillingTime(terms.billing_time),
        tz=resolve_timezone(terms.customer_timezone, terms.organization_timezone),
    )
    if terms.terminated_at is not None and terms.terminated_at < found.end:
        return BillingPeriod(found.start, max(terms.terminated_at, found.start))
    return found


def new_state(charge: ChargeTerms, period: BillingPeriod) -> Aggregation:
    return charge_state(charge.aggregation_type, charge.charge_model, charge.properties, period)


class ScratchUsage:
    """Folds records of the events topic; `usage` holds the result, `counts` the outcomes."""

    def __init__(self, terms: list[Terms]) -> None:
        self.terms: dict[tuple[str, str], list[Terms]] = {}
        for t in terms:
            self.terms.setdefault((t.organization_id, t.external_id), []).append(t)
        self.seen: set[tuple[str, str, str]] = set()
        self.usage: dict[UsageKey, ChargeUsage] = {}
        self.counts: Counter[str] = Counter()

    def add_record(self, value: bytes | None, timestamp_ms: int) -> None:
        received_at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        try:
            items = decode_record(value or b"")
        except orjson.JSONDecodeError:
            self.counts["invalid"] += 1
            return
        for raw in items:
            self.add_event(raw, received_at)

    def add_event(self, raw: Any, received_at: datetime) -> None:
        if not isinstance(raw, dict):
            self.counts["invalid"] += 1
            return
        raw = dict(raw)
        organization_id = raw.pop("organization_id", None)
        try:
            event = parse_event(raw, received_at=received_at)
        except BillingError:
            self.counts["invalid"] += 1
            return
        candidates = self.terms.get((str(organization_id), event.external_subscription_id))
        if not candidates:
            self.counts["not_selected"] += 1
            return
        marker = (str(organization_id), event.external_subscription_id, event.transaction_id)
        if marker in self.seen:
            self.counts["duplicate"] += 1
            return
        self.seen.add(marker)
        terms = next((t for t in candidates if t.covers(event.timestamp)), None)
        if terms is None:
            self.counts["outside_subscription"] += 1
            return
        charges = [c for c in terms.charges if c.metric_code == event.code]
        if not charges:
            self.counts["no_charge"] += 1
            return
        period = period_of(terms, event.timestamp)
        for charge in charges:
            key = (terms.subscription_id, charge.charge_id, period.start)
            found = self.usage.get(key)
            if found is None:
                found = ChargeUsage(terms, charge, period, new_state(charge, period))
                self.usage[key] = found
            try:
                value = AGGREGATIONS[charge.aggregation_type].event_value(
                    event.properties, charge.field_name or ""
                )
            except BillingError:
                self.counts["invalid"] += 1
                return
            found.state.add(value, event.timestamp, transaction_id=event.transaction_id)
        self.counts["applied"] += 1
