"""The aggregator's in-memory view of the compacted catalog topic, and the reader that
keeps it current.

The catalog topic already is a compacted log of the latest version of every object, so
each worker reads it from the beginning at start (a plain consumer without a group, so
no committed offset can make it skip records) and then follows it. A Faust table fed
from it would only copy the same records into a second changelog; lookups stay in
memory either way, never a database query per event.

A worker keeps only the subscriptions of the events partitions it owns (their events are
the only ones it folds, their periods the only ones it closes), so that W workers hold
1/W of the subscriptions each; organizations, metrics, plans and customers are kept
whole. When its partitions change, it reads the topic again from the beginning, which
takes the subscriptions of the partitions it gained and drops those it lost. A
subscription's record names the subscription in its headers (`meterflow.catalog`), so a
record of another worker's partitions is skipped without decoding its value.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
from aiokafka import TopicPartition

from aggregator.catalog_terms import (
    ChargeTerms,
    CustomerEntry,
    Pending,
    PlanTerms,
    SubscriptionTerms,
    plan_terms,
    shared,
    subscription_entry,
)
from meterflow.catalog import CatalogKind, CatalogRecord, subscription_of
from meterflow.event_records import partition_for
from meterflow.topics import reader

__all__ = ["CatalogReader", "CatalogView", "ChargeTerms", "PlanTerms", "SubscriptionTerms"]

log = logging.getLogger(__name__)


_NOTHING: dict[str, Any] = {}


class CatalogView:
    """The latest version of every catalog object, indexed the ways the aggregator asks.

    Per subscription it holds one compact `SubscriptionTerms` (its own fields, interned
    strings, a reference to its plan's shared `PlanTerms`) under its external id, and its
    external id in its customer's entry of an index by customer; the raw
    records of subscriptions and customers are not kept. A change costs what it touches: a
    subscription's record replaces its entry; a plan or metric change drops the organization's
    plan terms (a few objects), and each subscription of the plan takes the new ones at its
    next lookup (one Struct copy); a timezone change the same way.
    """

    def __init__(self, partitions: int = 0) -> None:
        # The events partitions whose subscriptions are kept, of `partitions` (None: all).
        self.partitions = partitions
        self._kept: frozenset[int] | None = None
        self.keeps_all = True  # (kept None, or every partition: no id to hash)
        # Organizations, billable metrics and plans: few, kept as records.
        self._objects: dict[tuple[CatalogKind, str], CatalogRecord] = {}
        self._metrics: dict[str, dict[str, Any]] = {}  # billable metric lago id -> body
        self._plans: dict[str, dict[str, dict[str, Any]]] = {}  # org -> code -> body
        self._plan_terms: dict[str, dict[str, PlanTerms | None]] = {}  # org -> code -> terms
        self._org_timezone: dict[str, str | None] = {}
        # Customers and subscriptions: many, kept compact. Customers by lago id (a deleted
        # one's record names only that) and by external id; subscriptions by external id.
        self._customer_ids: dict[str, CustomerEntry] = {}
        self._customers: dict[str, dict[str, CustomerEntry]] = {}  # org -> external id ->
        self._subscriptions: dict[str, dict[str, SubscriptionTerms | Pending]] = {}
        # Which subscriptions a customer's change concerns (external ids).
        self._by_customer: dict[str, dict[str, str | set[str]]] = {}
        # The versions of deleted customers and subscriptions (an older record is ignored).
        self._deleted: dict[str, int] = {}
        # (organization_id, external_id) -> when this worker first saw the termination
        # (Unix seconds): the period closer waits for the stream to pass it.
        self._termination_seen: dict[tuple[str, str], float] = {}
        self.records_applied = 0
        self.clock: Callable[[], float] = time.time  # Unix seconds (tests set their own)

    def apply(self, record: CatalogRecord, *, kept: bool = False) -> bool:
        """Take a record into the view; older versions than the one held are ignored.
        `kept`: the record's headers already showed its subscription kept (`take`)."""
        kind = record.kind
        if kind is CatalogKind.SUBSCRIPTION:
            applied = self._apply_subscription(record, kept)
        elif kind is CatalogKind.CUSTOMER:
            applied = self._apply_customer(record)
        else:
            applied = self._apply_object(record)
        if applied:
            self.records_applied += 1
        return applied

    def _newer(self, record: CatalogRecord, held: int | None) -> bool:
        if held is None:
            held = self._deleted.get(record.lago_id)
        return held is None or held <= record.version

    def _apply_object(self, record: CatalogRecord) -> bool:
        ident = (record.kind, record.lago_id)
        held = self._objects.get(ident)
        if not self._newer(record, None if held is None else held.version):
            return False
        self._objects[ident] = record
        org, body = shared(record.organization_id) or "", record.body
        if record.kind is CatalogKind.ORGANIZATION:
            self._org_timezone[record.lago_id] = shared((body or _NOTHING).get("timezone"))
        elif record.kind is CatalogKind.BILLABLE_METRIC:
            self._metrics.pop(record.lago_id, None)
            if body is not None:
                self._metrics[record.lago_id] = body
            self._plan_terms.pop(org, None)  # any plan of the organization may charge it
        elif record.kind is CatalogKind.PLAN:
            plans = self._plans.setdefault(org, {})
            terms = self._plan_terms.setdefault(org, {})
            if held is not None and held.body is not None:
                old = held.body["code"]
                if plans.get(old) is held.body:
                    del plans[old]
                terms.pop(old, None)
            if body is not None:
                plans[shared(body["code"]) or ""] = body
                terms.pop(body["code"], None)
        return True

    def _apply_customer(self, record: CatalogRecord) -> bool:
        held = self._customer_ids.get(record.lago_id)
        if not self._newer(record, None if held is None else held.version):
            return False
        org = shared(record.organization_id) or ""
        customers = self._customers.setdefault(org, {})
        if held is not None and customers.get(held.external_id) is held:
            del customers[held.external_id]
        body = record.body
        if body is None:
            self._customer_ids.pop(record.lago_id, None)
            self._deleted[record.lago_id] = record.version
            return True
        entry = CustomerEntry(
            record.lago_id,
            shared(body["external_id"]) or "",
            shared(body.get("timezone")),
            record.version,
        )
        self._customer_ids[record.lago_id] = customers[entry.external_id] = entry
        return True

    def _apply_subscription(self, record: CatalogRecord, kept: bool) -> bool:
        org = shared(record.organization_id) or ""
        body = record.body
        subscriptions = self._subscriptions.setdefault(org, {})
        ext = None if body is None else body.get("external_id")
        if isinstance(ext, str) and not kept and not self.keeps(ext):
            self.drop(org, ext)
            return False
        if body is not None:
            held = subscriptions.get(ext)  # type: ignore[arg-type]
            if held is not None and held.subscription_id != record.lago_id:
                held = None  # another subscription under that id: the later record wins
        else:  # ingest never deletes a subscription (it terminates them): searched
            held = next(
                (h for h in subscriptions.values() if h.subscription_id == record.lago_id),
                None,
            )
        if not self._newer(record, None if held is None else held.version):
            return False
        entry = (
            None if body is None else subscription_entry(org, record.lago_id, record.version, body)
        )
        if held is not None:
            self._unindex(held)
        if entry is None:
            self._deleted[record.lago_id] = record.version
            return True
        ext = entry.external_subscription_id
        subscriptions[ext] = entry
        of_customer = self._by_customer.setdefault(org, {})
        found = of_customer.get(entry.external_customer_id)
        if found is None or found == ext:
            of_customer[entry.external_customer_id] = ext
        elif isinstance(found, str):
            of_customer[entry.external_customer_id] = {found, ext}
        else:
            found.add(ext)
        terminated = entry.terminated_at
        if terminated is not None and (held is None or held.terminated_at != terminated):
            self._termination_seen[(org, ext)] = self.clock()
        return True

    def take(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> CatalogRecord | None:
        """A record as read from the topic: the record once applied, or None when older
        than the one held or of a subscription this worker does not keep (skipped without
        decoding when its headers name it, `meterflow.catalog`). ValueError, KeyError or
        TypeError when it is invalid."""
        named = None if self.keeps_all else subscription_of(headers)
        if named is not None and not self.keeps(named[1]):
            self.drop(*named)
            return None
        record = CatalogRecord.decode(value)
        return record if self.apply(record, kept=named is not None) else None

    def drop(self, organization_id: str, external_subscription_id: str) -> None:
        """Forget a subscription of a partition this worker no longer owns, if held."""
        held = self._subscriptions.get(organization_id, _NO_SUBSCRIPTIONS).get(
            external_subscription_id
        )
        if held is not None:
            self._unindex(held)
            self._termination_seen.pop((organization_id, external_subscription_id), None)

    @property
    def kept(self) -> frozenset[int] | None:
        """The events partitions whose subscriptions are kept (None: all of them)."""
        return self._kept

    @kept.setter
    def kept(self, partitions: frozenset[int] | None) -> None:
        self._kept = partitions
        self.keeps_all = partitions is None or len(partitions) == self.partitions

    def keeps(self, external_subscription_id: str) -> bool:
        """Whether the subscription's events partition is one whose subscriptions are kept."""
        if self.keeps_all:
            return True
        return partition_for(external_subscription_id.encode(), self.partitions) in (
            self._kept or ()
        )

    def _unindex(self, held: SubscriptionTerms | Pending) -> None:
        org, ext = held.organization_id, held.external_subscription_id
        subscriptions = self._subscriptions.get(org, {})
        if subscriptions.get(ext) is not held:
            return  # another lago id took the external id since
        del subscriptions[ext]
        of_customer = self._by_customer.get(org, {})
        found = of_customer.get(held.external_customer_id)
        if found == ext:
            del of_customer[held.external_customer_id]
        elif isinstance(found, set):
            found.discard(ext)

    def affected(self, record: CatalogRecord) -> Iterator[tuple[str, str]]:
        """(organization_id, external_subscription_id) of the subscriptions whose terms the
        record may have changed: lazily, over a copy of the index taken now (a plan,
        metric or organization change may concern a million; the caller takes them in
        slices). A plan's are found by reading the organization's subscriptions (no index
        by plan: 40 bytes a subscription for a rare change)."""
        org = record.organization_id
        body = record.body or _NOTHING
        if record.kind is CatalogKind.SUBSCRIPTION:
            ext = body.get("external_id")
            return iter(() if ext is None else ((org, ext),))
        if record.kind is CatalogKind.CUSTOMER and "external_id" in body:
            of_customer = self._by_customer.get(org, {}).get(body["external_id"], ())
            found = (of_customer,) if isinstance(of_customer, str) else list(of_customer)
            return ((org, ext) for ext in found)
        entries = list(self._subscriptions.get(org, {}).values())
        if record.kind is CatalogKind.PLAN and "code" in body:
            code = body["code"]
            return ((org, e.external_subscription_id) for e in entries if e.plan_code == code)
        # organization, billable metric (or a deleted object): any of the org's
        return ((org, e.external_subscription_id) for e in entries)

    def termination_seen(self, organization_id: str, external_subscription_id: str) -> float:
        """When this worker first saw the subscription's termination (Unix seconds; 0 when
        it never did)."""
        return self._termination_seen.get((organization_id, external_subscription_id), 0.0)

    def subscription_ids(self) -> Iterator[tuple[str, str]]:
        """(organization_id, external_subscription_id) of every known subscription, lazily
        over a copy of the external ids taken now (a million: a few milliseconds), so that
        a caller may yield to the event loop between two slices of them."""
        taken = [(org, list(of_org)) for org, of_org in self._subscriptions.items()]
        return ((org, ext) for org, exts in taken for ext in exts)

    def __len__(self) -> int:
        """The subscriptions known."""
        return sum(len(of_org) for of_org in self._subscriptions.values())

    def terms(
        self, organization_id: str, external_subscription_id: str
    ) -> SubscriptionTerms | None:
        """The subscription with its plan, charges, metrics and timezone, or None while
        any of them is still unknown."""
        subscriptions = self._subscriptions.get(organization_id)
        if subscriptions is None:
            return None
        held = subscriptions.get(external_subscription_id)
        if not isinstance(held, SubscriptionTerms):
            return None
        plan = self._plan(organization_id, held.plan_code)
        if plan is None:
            return None
        customer = self._customers.get(organization_id, _NO_CUSTOMERS).get(
            held.external_customer_id
        )
        timezone = None if customer is None else customer.timezone
        organization_timezone = self._org_timezone.get(organization_id)
        if (
            held.plan is plan
            and held.timezone == timezone
            and held.organization_timezone == organization_timezone
        ):
            return held
        # What it shares changed (or was never resolved): a new object, so that whatever was
        # derived from the old one (a cached period) is derived again.
        fresh = msgspec.structs.replace(
            held, plan=plan, timezone=timezone, organization_timezone=organization_timezone
        )
        subscriptions[external_subscription_id] = fresh
        return fresh

    def _plan(self, organization_id: str, code: str) -> PlanTerms | None:
        of_org = self._plan_terms.get(organization_id)
        if of_org is None:
            of_org = self._plan_terms[organization_id] = {}
        if code in of_org:
            return of_org[code]
        plan = self._plans.get(organization_id, _NOTHING).get(code)
        found = of_org[code] = None if plan is None else plan_terms(plan, self._metrics)
        return found


_NO_CUSTOMERS: dict[str, CustomerEntry] = {}
_NO_SUBSCRIPTIONS: dict[str, SubscriptionTerms | Pending] = {}


class CatalogReader:
    """Reads the catalog topic from its beginning into a CatalogView, then follows it.

    `ready` is set once everything that was in the topic at start has been read, so the
    event stream never mistakes a known subscription for an unknown one after a restart.
    With `partitioned`, it starts reading at the worker's first assignment (`assign`) and
    reads again from the beginning at each change of it (the view keeps the subscriptions
    of the partitions owned), not ready meanwhile.
    """

    def __init__(
        self, bootstrap: str, topic: str, view: CatalogView, *, partitioned: bool = False
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.view = view
        self.ready = asyncio.Event()
        # Called with the records of each poll that changed the view.
        self.on_change: list[Callable[[list[CatalogRecord]], None]] = []
        # Set when the topic is to be read from its beginning (at once, or at `assign`).
        self._from_start = asyncio.Event()
        if not partitioned:
            self._from_start.set()
        self.partitioned = partitioned
        # How long the last read from the beginning took, until ready (seconds).
        self.read_seconds = 0.0

    def assign(self, partitions: frozenset[int]) -> None:
        """The worker now owns these events partitions: keep their subscriptions only, read
        from the beginning again when they changed. Not ready from this call on (it is made
        before the stream gets any event of the new assignment) until that read is done."""
        if not self.partitioned or partitions == self.view.kept:
            return
        self.view.kept = partitions
        self.ready.clear()
        self._from_start.set()

    async def run(self) -> None:
        async with reader(self.bootstrap) as consumer:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await self._from_start.wait()
            end, started = 0, time.monotonic()
            while True:
                if self._from_start.is_set():
                    self._from_start.clear()
                    started = time.monotonic()
                    await consumer.seek_to_beginning(tp)
                    end = (await consumer.end_offsets([tp]))[tp]
                    if end == 0:
                        self.ready.set()
                # 500 records (about 20 ms here) between two yields to the event loop.
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if self._from_start.is_set():
                    continue  # read under a view's former partitions: from the start again
                changed: list[CatalogRecord] = []
                for messages in batches.values():
                    for message in messages:
                        record = self._take(message.value, message.headers)
                        if record is not None:
                            changed.append(record)
                if changed and not self.ready.is_set():
                    # Long-lived from here on: out of the cyclic collector's sight at once,
                    # so no collection while the catalog loads (a full one, or each of the
                    # gc.collect() Faust's stores run at a rebalance) walks what is loaded,
                    # about 0.4 s at 500,000 subscriptions. O(1): it moves a list.
                    gc.freeze()
                if (
                    not self.ready.is_set()
                    and await consumer.position(tp) >= end
                    and not self._from_start.is_set()  # (assigned again meanwhile)
                ):
                    self.read_seconds = time.monotonic() - started
                    log.info(
                        "aggregator.catalog_loaded records=%d subscriptions=%d partitions=%s"
                        " seconds=%.2f",
                        self.view.records_applied,
                        len(self.view),
                        "all" if self.view.kept is None else sorted(self.view.kept),
                        self.read_seconds,
                    )
                    self.ready.set()
                # Not while loading: what was there at start is scheduled as a whole, once
                # loaded (the period closer seeds every subscription after an assignment).
                if changed and self.ready.is_set():
                    for callback in self.on_change:
                        callback(changed)

    def _take(
        self, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> CatalogRecord | None:
        """The record, once taken into the view (None if invalid, older than held or not
        kept)."""
        if value is None:
            return None
        try:
            return self.view.take(value, headers)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("aggregator.catalog_record_invalid error=%r", exc)
            return None
