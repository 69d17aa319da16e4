"""The aggregator's Domain port implemented by the pure `billing` package."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from aggregator.catalog_view import ChargeTerms, SubscriptionTerms
from aggregator.domain import UsageEvent, UsageState, ValueReader
from billing.aggregations import AGGREGATIONS, Aggregation
from billing.charge_models import charge_state, price_state
from billing.events import parse_event
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    period_containing,
    resolve_timezone,
)


@lru_cache(maxsize=4096)
def _zone(customer_tz: str | None, organization_tz: str | None) -> ZoneInfo:
    return resolve_timezone(customer_tz, organization_tz)


@lru_cache(maxsize=65_536)
def _period(
    instant: datetime, subscription_at: datetime, interval: str, billing_time: str, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """The billing period containing `instant` (a pure function, cached: the period closer
    asks it for every subscription after each assignment and again at each visit, and
    subscriptions started at the same instant on the same terms share the answer)."""
    found = period_containing(
        instant,
        subscription_at=subscription_at,
        interval=PlanInterval(interval),
        billing_time=BillingTime(billing_time),
        tz=tz,
    )
    return found.start, found.end


@lru_cache(maxsize=4096)
def _billing_period(start: datetime, end: datetime) -> BillingPeriod:
    """The (immutable) period of these bounds, checked once: every ledger a batch reads
    builds the states of its open period, mostly the same few periods."""
    return BillingPeriod(start, end)


class BillingDomain:
    def parse_event(
        self, organization_id: str, raw: dict[str, Any], received_at: datetime
    ) -> UsageEvent:
        event = parse_event(raw, received_at=received_at)
        return UsageEvent(
            organization_id=organization_id,
            transaction_id=event.transaction_id,
            external_subscription_id=event.external_subscription_id,
            code=event.code,
            timestamp=event.timestamp,
            properties=dict(event.properties or {}),
        )

    def period(self, terms: SubscriptionTerms, instant: datetime) -> tuple[datetime, datetime]:
        return _period(
            instant,
            terms.subscription_at,
            terms.interval,
            terms.billing_time,
            _zone(terms.timezone, terms.organization_timezone),
        )

    def new_state(
        self, charge: ChargeTerms, start: datetime, end: datetime, data: dict[str, Any] | None
    ) -> UsageState:
        return charge_state(
            charge.aggregation_type,
            charge.charge_model,
            charge.properties,
            _billing_period(start, end),
            data,
        )

    def value_of(self, charge: ChargeTerms, event: UsageEvent) -> object:
        return self.value_reader(charge)(event.properties, charge.field_name or "")

    def value_reader(self, charge: ChargeTerms) -> ValueReader:
        return AGGREGATIONS[charge.aggregation_type].event_value

    def add_many(self, state: UsageState, events: list[tuple[Any, datetime, str]]) -> None:
        cast(Aggregation, state).add_many(events)

    def amount_cents(self, charge: ChargeTerms, state: UsageState, currency: str) -> int:
        priced = price_state(charge.charge_model, charge.properties, cast(Aggregation, state))
        return priced.amount_cents(currency)
