"""The aggregator's port to the billing domain: parse an event, find its billing period,
keep an aggregation state, price units. `BillingDomain` is the real one (package
`billing`); unit tests of the ledger pass small fakes with the same shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from aggregator.catalog_view import ChargeTerms, SubscriptionTerms


class UsageEvent(msgspec.Struct, frozen=True, gc=False):
    """A validated usage event, as the aggregator needs it (a Struct: built for every event,
    in C)."""

    organization_id: str
    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: datetime
    properties: dict[str, Any]


# (event properties, field name) -> the value an aggregation adds; raises InvalidEvent
ValueReader = Callable[[Mapping[str, Any] | None, str], object]


class UsageState(Protocol):
    """A serialisable running aggregation (count, sum, max, unique count, ...)."""

    @property
    def events_count(self) -> int: ...

    def result(self) -> Decimal: ...

    def to_dict(self) -> dict[str, Any]: ...


class Domain(Protocol):
    def parse_event(
        self, organization_id: str, raw: dict[str, Any], received_at: datetime
    ) -> UsageEvent:
        """Validate a wire event of the organization (`raw` without its organization_id);
        raises InvalidEvent."""

    def period(self, terms: SubscriptionTerms, instant: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the billing period of `terms` containing `instant`, as UTC."""

    def new_state(
        self, charge: ChargeTerms, start: datetime, end: datetime, data: dict[str, Any] | None
    ) -> UsageState:
        """A fresh aggregation state of the charge's metric for the period [start, end), or
        the one restored from `data`."""

    def value_of(self, charge: ChargeTerms, event: UsageEvent) -> object:
        """What the charge's aggregation reads from the event; raises InvalidEvent."""

    def value_reader(self, charge: ChargeTerms) -> ValueReader:
        """What `value_of` calls: (event properties, the charge's field name) -> the value
        (looked up once per charge and batch, called for every event)."""

    def add_many(self, state: UsageState, events: list[tuple[Any, datetime, str]]) -> None:
        """Fold events (value, timestamp, transaction id) into the state, in order."""

    def amount_cents(self, charge: ChargeTerms, state: UsageState, currency: str) -> int:
        """The price of the state's usage under the charge's model, in minor units."""
