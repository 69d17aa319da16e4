"""The aggregator's in-memory view of the compacted catalog topic, and the reader that
keeps it current.

The catalog topic already is a compacted log of the latest version of every object, so
each worker reads it from the beginning at start (a plain consumer without a group, so
no committed offset can make it skip records) and then follows it. A Faust table fed
from it would only copy the same records into a second changelog; lookups stay in
memory either way, never a database query per event.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from aiokafka import TopicPartition

from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.topics import reader

log = logging.getLogger(__name__)


def parse_instant(raw: str) -> datetime:
    """An ISO 8601 instant from the catalog ('Z' or an offset) as an aware datetime."""
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"instant without timezone: {raw!r}")
    return value


# The terms are built on a subscription's first event and kept (a million subscriptions: some
# eight million objects). As msgspec Structs with gc=False they are out of the cyclic
# collector's sight, as the frozen catalog they are made of: tracked, they were walked by
# every middle and full collection while a worker met its subscriptions' first events, up
# to 0.3 s a collection at 100,000 subscriptions (issue 15). They hold no cycle.
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


class SubscriptionTerms(msgspec.Struct, frozen=True, gc=False):
    """Everything the aggregator needs to bucket and price one subscription's events."""

    organization_id: str
    subscription_id: str
    external_subscription_id: str
    external_customer_id: str
    plan_code: str
    interval: str
    billing_time: str
    subscription_at: datetime
    terminated_at: datetime | None
    timezone: str | None
    organization_timezone: str | None
    currency: str
    charges: tuple[ChargeTerms, ...]
    # The charges by metric code, asked for every event (filled in __post_init__).
    by_code: dict[str, tuple[ChargeTerms, ...]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for charge in self.charges:
            self.by_code[charge.metric_code] = (*self.by_code.get(charge.metric_code, ()), charge)

    def charges_for_metric(self, code: str) -> tuple[ChargeTerms, ...]:
        return self.by_code.get(code, ())


class CatalogView:
    """The latest version of every catalog object, indexed the ways the aggregator asks."""

    def __init__(self) -> None:
        self._objects: dict[tuple[CatalogKind, str], CatalogRecord] = {}
        # (organization_id, external_id) -> lago_id
        self._subscriptions: dict[tuple[str, str], str] = {}
        self._customers: dict[tuple[str, str], str] = {}
        self._plans: dict[tuple[str, str], str] = {}
        self._terms: dict[tuple[str, str], SubscriptionTerms | None] = {}
        # Which subscriptions a change of another object may concern: by organization, by
        # (organization, external customer id) and by (organization, plan code).
        self._by_org: dict[str, set[Any]] = {}
        self._by_customer: dict[tuple[str, Any], set[str]] = {}
        self._by_plan: dict[tuple[str, Any], set[str]] = {}
        # (organization_id, external_id) -> when this worker first saw the termination
        # (Unix seconds): the period closer waits for the stream to pass it.
        self._termination_seen: dict[tuple[str, str], float] = {}
        self.records_applied = 0
        self.clock: Callable[[], float] = time.time  # Unix seconds (tests set their own)

    def apply(self, record: CatalogRecord) -> bool:
        """Take a record into the view; older versions than the one held are ignored."""
        ident = (record.kind, record.lago_id)
        held = self._objects.get(ident)
        if held is not None and held.version > record.version:
            return False
        self._objects[ident] = record
        body = record.body
        index = {
            CatalogKind.SUBSCRIPTION: self._subscriptions,
            CatalogKind.CUSTOMER: self._customers,
            CatalogKind.PLAN: self._plans,
        }.get(record.kind)
        if index is not None:
            if held is not None and held.body is not None:
                old_key = (held.organization_id, _external_key(held.kind, held.body))
                if index.get(old_key) == record.lago_id:
                    del index[old_key]
            if body is not None:
                index[(record.organization_id, _external_key(record.kind, body))] = record.lago_id
        if record.kind is CatalogKind.SUBSCRIPTION:
            self._index_subscription(record, None if held is None else held.body)
        # Any change may alter how a subscription is priced; terms are cheap to rebuild.
        self._terms.clear()
        self.records_applied += 1
        return True

    def _index_subscription(self, record: CatalogRecord, old: dict[str, Any] | None) -> None:
        org = record.organization_id
        if old is not None:
            ext = old.get("external_id")
            self._by_org.get(org, set()).discard(ext)
            self._by_customer.get((org, old.get("external_customer_id")), set()).discard(ext)
            self._by_plan.get((org, old.get("plan_code")), set()).discard(ext)
        body = record.body
        if body is None:
            return
        ext = body.get("external_id")
        if not isinstance(ext, str):
            return
        self._by_org.setdefault(org, set()).add(ext)
        self._by_customer.setdefault((org, body.get("external_customer_id")), set()).add(ext)
        self._by_plan.setdefault((org, body.get("plan_code")), set()).add(ext)
        terminated = body.get("terminated_at")
        if terminated and (old is None or old.get("terminated_at") != terminated):
            self._termination_seen[(org, ext)] = self.clock()

    def affected(self, record: CatalogRecord) -> list[tuple[str, str]]:
        """(organization_id, external_subscription_id) of the subscriptions whose terms the
        record may have changed."""
        org = record.organization_id
        body = record.body or {}
        if record.kind is CatalogKind.SUBSCRIPTION:
            ext = body.get("external_id")
            return [] if ext is None else [(org, ext)]
        if record.kind is CatalogKind.CUSTOMER and "external_id" in body:
            found = self._by_customer.get((org, body["external_id"]), set())
        elif record.kind is CatalogKind.PLAN and "code" in body:
            found = self._by_plan.get((org, body["code"]), set())
        else:  # organization, billable metric (or a deleted object): any of the org's
            found = self._by_org.get(org, set())
        return [(org, ext) for ext in found]

    def termination_seen(self, organization_id: str, external_subscription_id: str) -> float:
        """When this worker first saw the subscription's termination (Unix seconds; 0 when
        it never did)."""
        return self._termination_seen.get((organization_id, external_subscription_id), 0.0)

    def _body(self, kind: CatalogKind, lago_id: str | None) -> dict[str, Any] | None:
        if lago_id is None:
            return None
        record = self._objects.get((kind, lago_id))
        return None if record is None else record.body

    def subscription_ids(self) -> list[tuple[str, str]]:
        """(organization_id, external_subscription_id) of every known subscription."""
        return list(self._subscriptions)

    def terms(
        self, organization_id: str, external_subscription_id: str
    ) -> SubscriptionTerms | None:
        """The subscription with its plan, charges, metrics and timezone, or None while
        any of them is still unknown."""
        key = (organization_id, external_subscription_id)
        if key not in self._terms:
            self._terms[key] = self._build_terms(organization_id, external_subscription_id)
        return self._terms[key]

    def _build_terms(self, org: str, external_id: str) -> SubscriptionTerms | None:
        sub = self._body(CatalogKind.SUBSCRIPTION, self._subscriptions.get((org, external_id)))
        if sub is None:
            return None
        plan = self._body(CatalogKind.PLAN, self._plans.get((org, sub["plan_code"])))
        if plan is None:
            return None
        customer = self._body(
            CatalogKind.CUSTOMER, self._customers.get((org, sub["external_customer_id"]))
        )
        organization = self._body(CatalogKind.ORGANIZATION, org)
        charges = []
        for charge in plan.get("charges") or []:
            metric = self._body(CatalogKind.BILLABLE_METRIC, charge.get("billable_metric_id"))
            if metric is None:
                return None
            charges.append(
                ChargeTerms(
                    charge_id=charge["lago_id"],
                    charge_model=charge["charge_model"],
                    properties=charge.get("properties") or {},
                    charge=charge,
                    metric_id=charge["billable_metric_id"],
                    metric_code=metric["code"],
                    aggregation_type=metric["aggregation_type"],
                    field_name=metric.get("field_name"),
                    metric=metric,
                )
            )
        started = sub.get("subscription_at") or sub.get("started_at")
        if not isinstance(started, str):
            return None
        terminated = sub.get("terminated_at")
        return SubscriptionTerms(
            organization_id=org,
            subscription_id=sub["lago_id"],
            external_subscription_id=external_id,
            external_customer_id=sub["external_customer_id"],
            plan_code=sub["plan_code"],
            interval=plan["interval"],
            billing_time=sub.get("billing_time") or "calendar",
            subscription_at=parse_instant(started),
            terminated_at=parse_instant(terminated) if terminated else None,
            timezone=(customer or {}).get("timezone"),
            organization_timezone=(organization or {}).get("timezone"),
            currency=plan.get("amount_currency") or "USD",
            charges=tuple(charges),
        )


def _external_key(kind: CatalogKind, body: dict[str, Any]) -> str:
    return str(body["code"] if kind is CatalogKind.PLAN else body["external_id"])


class CatalogReader:
    """Reads the catalog topic from its beginning into a CatalogView, then follows it.

    `ready` is set once everything that was in the topic at start has been read, so the
    event stream never mistakes a known subscription for an unknown one after a restart.
    """

    def __init__(self, bootstrap: str, topic: str, view: CatalogView) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.view = view
        self.ready = asyncio.Event()
        # Called with the records of each poll that changed the view.
        self.on_change: list[Callable[[list[CatalogRecord]], None]] = []

    async def run(self) -> None:
        async with reader(self.bootstrap) as consumer:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                self.ready.set()
            while True:
                # 500 records (about 20 ms here) between two yields to the event loop.
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                changed: list[CatalogRecord] = []
                for messages in batches.values():
                    for message in messages:
                        record = self._apply(message.value)
                        if record is not None:
                            changed.append(record)
                if changed and not self.ready.is_set():
                    # Long-lived from here on: out of the cyclic collector's sight at once,
                    # so no collection while the catalog loads (a full one, or each of the
                    # gc.collect() Faust's stores run at a rebalance) walks what is loaded,
                    # about 0.4 s at 500,000 subscriptions. O(1): it moves a list.
                    gc.freeze()
                if not self.ready.is_set() and await consumer.position(tp) >= end:
                    log.info("aggregator.catalog_loaded records=%d", self.view.records_applied)
                    self.ready.set()
                # Not while loading: what was there at start is scheduled as a whole, once
                # loaded (the period closer seeds every subscription after an assignment).
                if changed and self.ready.is_set():
                    for callback in self.on_change:
                        callback(changed)

    def _apply(self, value: bytes | None) -> CatalogRecord | None:
        """The record, once taken into the view (None if invalid or older than held)."""
        if value is None:
            return None
        try:
            record = CatalogRecord.decode(value)
            return record if self.view.apply(record) else None
        except (ValueError, KeyError, TypeError) as exc:
            log.error("aggregator.catalog_record_invalid error=%r", exc)
            return None
