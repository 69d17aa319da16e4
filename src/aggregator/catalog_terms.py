"""What the aggregator keeps per catalog object: a plan's terms shared by its subscriptions,
and one compact Struct per subscription and per customer, built from catalog records."""

from __future__ import annotations

import sys
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec


@lru_cache(maxsize=4096)
def parse_instant(raw: str) -> datetime:
    """An ISO 8601 instant from the catalog ('Z' or an offset) as an aware datetime (cached:
    subscriptions created together share the object; datetimes are immutable)."""
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"instant without timezone: {raw!r}")
    return value


def shared(value: Any) -> str | None:
    """A string many subscriptions repeat (organization, plan code, customer id, billing
    time, timezone), interned: held once however many records carry it."""
    return sys.intern(value) if isinstance(value, str) else None


# Every Struct here is gc=False: a million subscriptions' objects stay out of the cyclic
# collector's sight (tracked, they were walked by every middle and full collection, up to
# 0.3 s a collection at 100,000 subscriptions: issue 15). None holds a cycle.
class ChargeTerms(msgspec.Struct, frozen=True, gc=False):
    """One charge of a plan joined with its billable metric."""

    charge_id: str
    charge_model: str
    properties: dict[str, Any]
    charge: dict[str, Any]
    metric_id: str
    metric_code: str
    aggregation_type: str
    field_name: str | None
    metric: dict[str, Any]


class PlanTerms(msgspec.Struct, frozen=True, gc=False):
    """A plan joined with its metrics: one per (organization, plan code), shared by every
    subscription of the plan, built again only when the plan or a metric changes."""

    interval: str
    currency: str
    charges: tuple[ChargeTerms, ...]
    # The charges by metric code, asked for every event (filled in __post_init__).
    by_code: dict[str, tuple[ChargeTerms, ...]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for charge in self.charges:
            self.by_code[charge.metric_code] = (*self.by_code.get(charge.metric_code, ()), charge)


# A subscription whose plan is not resolved yet (never handed out by the view).
UNRESOLVED = PlanTerms(interval="", currency="", charges=())


class SubscriptionTerms(msgspec.Struct, frozen=True, gc=False):
    """Everything the aggregator needs to bucket and price one subscription's events: the
    subscription's own fields and references to what it shares with others (its plan's
    terms, interned strings). The view keeps exactly one per subscription, replaced (a new
    object) when the subscription, its plan, a metric or a timezone changes."""

    organization_id: str
    subscription_id: str
    external_subscription_id: str
    external_customer_id: str
    plan_code: str
    billing_time: str
    subscription_at: datetime
    terminated_at: datetime | None
    timezone: str | None
    organization_timezone: str | None
    plan: PlanTerms
    version: int = 0

    @property
    def interval(self) -> str:
        return self.plan.interval

    @property
    def currency(self) -> str:
        return self.plan.currency

    @property
    def charges(self) -> tuple[ChargeTerms, ...]:
        return self.plan.charges

    def charges_for_metric(self, code: str) -> tuple[ChargeTerms, ...]:
        return self.plan.by_code.get(code, ())


class CustomerEntry(msgspec.Struct, frozen=True, gc=False):
    """What the aggregator reads of a customer: its timezone (and what finds it again)."""

    lago_id: str
    external_id: str
    timezone: str | None
    version: int


class Pending(msgspec.Struct, frozen=True, gc=False):
    """A subscription record that cannot be bucketed (no start instant): kept for its
    version and index entries, never handed out as terms."""

    organization_id: str
    subscription_id: str
    external_subscription_id: str
    external_customer_id: str
    plan_code: str
    terminated_at: datetime | None
    version: int


def subscription_entry(
    organization_id: str, lago_id: str, version: int, body: dict[str, Any]
) -> SubscriptionTerms | Pending | None:
    """The compact entry of a subscription record's body (None without an external id)."""
    external_id = body.get("external_id")
    if not isinstance(external_id, str):
        return None
    terminated = body.get("terminated_at")
    terminated_at = parse_instant(terminated) if isinstance(terminated, str) else None
    customer = shared(body.get("external_customer_id")) or ""
    plan_code = shared(body.get("plan_code")) or ""
    started = body.get("subscription_at") or body.get("started_at")
    if not isinstance(started, str):
        return Pending(
            organization_id, lago_id, external_id, customer, plan_code, terminated_at, version
        )
    return SubscriptionTerms(
        organization_id=organization_id,
        subscription_id=lago_id,
        external_subscription_id=external_id,
        external_customer_id=customer,
        plan_code=plan_code,
        billing_time=shared(body.get("billing_time")) or "calendar",
        subscription_at=parse_instant(started),
        terminated_at=terminated_at,
        timezone=None,
        organization_timezone=None,
        plan=UNRESOLVED,
        version=version,
    )


def plan_terms(plan: dict[str, Any], metric: dict[str, dict[str, Any]]) -> PlanTerms | None:
    """The plan's terms, its charges joined with their metrics (`metric` by lago id); None
    while a metric is unknown."""
    charges = []
    for charge in plan.get("charges") or []:
        found = metric.get(charge.get("billable_metric_id"))
        if found is None:
            return None
        charges.append(
            ChargeTerms(
                charge_id=charge["lago_id"],
                charge_model=charge["charge_model"],
                properties=charge.get("properties") or {},
                charge=charge,
                metric_id=charge["billable_metric_id"],
                metric_code=found["code"],
                aggregation_type=found["aggregation_type"],
                field_name=found.get("field_name"),
                metric=found,
            )
        )
    return PlanTerms(
        interval=plan["interval"],
        currency=plan.get("amount_currency") or "USD",
        charges=tuple(charges),
    )
