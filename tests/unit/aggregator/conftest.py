"""A stand-in Domain for the aggregator's pure logic: BillingDomain's real periods and
aggregations, with a minimal event parser and a flat unit price (the real parser and charge
models are exercised by the integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from aggregator.billing_domain import BillingDomain
from aggregator.catalog_view import CatalogView, ChargeTerms
from aggregator.domain import UsageEvent, UsageState
from aggregator.sample_catalog import SampleCatalog
from billing.errors import InvalidEvent


class StandInDomain(BillingDomain):
    def parse_event(
        self, organization_id: str, raw: dict[str, Any], received_at: datetime
    ) -> UsageEvent:
        for name in ("transaction_id", "external_subscription_id", "code"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise InvalidEvent("missing or not a string", name)
        ts = raw.get("timestamp")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            raise InvalidEvent("not a number", "timestamp")
        return UsageEvent(
            organization_id=organization_id,
            transaction_id=raw["transaction_id"],
            external_subscription_id=raw["external_subscription_id"],
            code=raw["code"],
            timestamp=datetime.fromtimestamp(ts, tz=UTC),
            properties=raw.get("properties") or {},
        )

    def amount_cents(self, charge: ChargeTerms, state: UsageState, currency: str) -> int:
        return int(state.result() * Decimal(charge.properties["amount"]) * 100)


@pytest.fixture
def domain() -> StandInDomain:
    return StandInDomain()


@pytest.fixture
def catalog() -> CatalogView:
    """Organization o1 (UTC) with a monthly plan charging count_agg `calls` and sum_agg `gb`,
    subscription s1 of customer c1 since 2026-01-01."""
    sample = SampleCatalog("o1")
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls", "gb"])
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2026-01-01T00:00:00Z")
    view = CatalogView()
    for record in sample.records:
        view.apply(record)
    return view
