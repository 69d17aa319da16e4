"""The catalog view's cost: compact per subscription, and a change costs what it touches."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from types import SimpleNamespace

import pytest

from aggregator.catalog_view import CatalogView
from aggregator.closing_driver import SLICE, ClosingDriver
from aggregator.sample_catalog import SampleCatalog
from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.event_records import partition_for


def two_plans(subscriptions: int) -> tuple[SampleCatalog, list[bytes]]:
    """o1 with plans p1 (metric calls) and p2 (metric gb), two customers, and
    `subscriptions` subscriptions alternating between (p1, c1) and (p2, c2), encoded as the
    topic holds them (each decoded record has strings of its own)."""
    sample = SampleCatalog("o1", organization_timezone="Europe/Paris")
    sample.organization()
    sample.customer("c1", timezone="Asia/Tokyo")
    sample.customer("c2")
    sample.metric("calls")
    sample.metric("gb", "sum_agg", "gb")
    sample.plan("p1", ["calls"])
    sample.plan("p2", ["gb"])
    encoded = [record.encode() for record in sample.records]
    for i in range(subscriptions):
        record = SampleCatalog("o1").subscription(
            f"s{i}",
            customer=f"c{1 + i % 2}",
            plan_code=f"p{1 + i % 2}",
            subscription_at="2026-01-05T00:00:00Z",
        )
        encoded.append(record.encode())
    return sample, encoded


def loaded(subscriptions: int) -> tuple[SampleCatalog, CatalogView]:
    sample, encoded = two_plans(subscriptions)
    view = CatalogView()
    for value in encoded:
        view.apply(CatalogRecord.decode(value))
    return sample, view


def test_a_plan_change_renews_that_plans_terms_only() -> None:
    sample, view = loaded(4)
    before = {ext: view.terms("o1", ext) for ext in ("s0", "s1", "s2", "s3")}
    assert all(terms is not None for terms in before.values())
    assert view.terms("o1", "s0") is before["s0"]  # unchanged: the same object
    changed = sample.plan("p1", ["calls"], unit_amount="0.02", currency="EUR")
    assert changed.version == 2
    view.apply(changed)
    assert sorted(view.affected(changed)) == [("o1", "s0"), ("o1", "s2")]
    s0, s1 = view.terms("o1", "s0"), view.terms("o1", "s1")
    assert s0 is not None and s0 is not before["s0"]  # a new object: cached periods renew
    assert s0.currency == "EUR" and s0.charges[0].properties == {"amount": "0.02"}
    assert s1 is before["s1"]  # another plan: untouched
    s2 = view.terms("o1", "s2")
    assert s2 is not None and s2.plan is s0.plan  # one PlanTerms for the plan's subscriptions


def test_a_metric_change_reaches_every_plan_charging_it() -> None:
    sample, view = loaded(2)
    assert view.terms("o1", "s0") is not None
    view.apply(sample.metric("calls", "unique_count_agg", "user"))
    terms = view.terms("o1", "s0")
    assert terms is not None
    assert (terms.charges[0].aggregation_type, terms.charges[0].field_name) == (
        "unique_count_agg",
        "user",
    )


def test_a_timezone_change_reaches_the_customers_and_the_organizations_subscriptions() -> None:
    sample, view = loaded(4)
    s0, s1 = view.terms("o1", "s0"), view.terms("o1", "s1")
    assert s0 is not None and s1 is not None
    assert (s0.timezone, s1.timezone, s1.organization_timezone) == (
        "Asia/Tokyo",
        None,
        "Europe/Paris",
    )
    customer = sample.customer("c1", timezone="America/New_York")
    view.apply(customer)
    assert sorted(view.affected(customer)) == [("o1", "s0"), ("o1", "s2")]
    renewed = view.terms("o1", "s0")
    assert renewed is not None and renewed.timezone == "America/New_York"
    assert view.terms("o1", "s1") is s1
    sample.organization_timezone = "Pacific/Chatham"
    organization = sample.organization()
    view.apply(organization)
    assert len(list(view.affected(organization))) == 4
    s1_now = view.terms("o1", "s1")
    assert s1_now is not None and s1_now.organization_timezone == "Pacific/Chatham"


def test_a_subscription_waits_for_its_plan_and_metric_and_moves_plans() -> None:
    view = CatalogView()
    sample = SampleCatalog("o1")
    view.apply(
        sample.subscription(
            "s1", customer="c1", plan_code="p1", subscription_at="2026-01-05T00:00:00Z"
        )
    )
    assert view.terms("o1", "s1") is None
    view.apply(sample.plan("p1", ["calls"]))
    assert view.terms("o1", "s1") is None  # its metric is still unknown
    view.apply(sample.metric("calls"))
    assert view.terms("o1", "s1") is not None  # no customer, no organization: UTC
    view.apply(sample.plan("p2", ["calls"], interval="weekly"))
    moved = sample.subscription(
        "s1", customer="c1", plan_code="p2", subscription_at="2026-01-05T00:00:00Z"
    )
    view.apply(moved)
    terms = view.terms("o1", "s1")
    assert terms is not None and terms.interval == "weekly"
    assert list(view.affected(sample.plan("p1", ["calls"]))) == []
    assert len(view) == 1 and list(view.subscription_ids()) == [("o1", "s1")]


def test_a_deleted_customer_or_subscription_ignores_its_older_versions() -> None:
    sample, view = loaded(2)
    customer = sample.records[1]
    view.apply(CatalogRecord(CatalogKind.CUSTOMER, customer.lago_id, "o1", 5, None))
    assert not view.apply(customer)  # version 1 after the deletion (version 5)
    s0 = view.terms("o1", "s0")
    assert s0 is not None and s0.timezone is None
    lago_id = "sub-o1-s0"
    assert view.apply(CatalogRecord(CatalogKind.SUBSCRIPTION, lago_id, "o1", 7, None))
    assert view.terms("o1", "s0") is None and len(view) == 1
    old = SampleCatalog("o1").subscription(
        "s0", customer="c1", plan_code="p1", subscription_at="2026-01-05T00:00:00Z"
    )
    assert not view.apply(old)


def test_a_subscription_costs_under_500_bytes_of_python_objects() -> None:
    """Everything the view holds per subscription (its entry, strings, index entries), at
    20,000 subscriptions of two plans, measured with tracemalloc (issue 15; the view kept
    about 2,300 bytes before: the decoded record, its dict, terms per subscription)."""
    sample, encoded = two_plans(20_000)
    view = CatalogView()
    for value in encoded[: len(sample.records)]:
        view.apply(CatalogRecord.decode(value))
    gc.collect()
    tracemalloc.start()
    try:
        for value in encoded[len(sample.records) :]:
            view.apply(CatalogRecord.decode(value))
        for organization_id, external_id in view.subscription_ids():
            assert view.terms(organization_id, external_id) is not None
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert size / 20_000 < 500


@pytest.mark.parametrize("kind", ["plan", "metric", "customer"])
def test_a_change_at_30000_subscriptions_costs_what_it_touches(kind: str) -> None:
    """Applying a plan, metric or customer change is O(1) (before: every subscription's
    terms dropped and rebuilt at its next event, about 28 us each); each subscription of
    the plan then renews its terms at its next lookup, a Struct copy."""
    sample, view = loaded(30_000)
    for organization_id, external_id in view.subscription_ids():
        view.terms(organization_id, external_id)
    change = {
        "plan": lambda: sample.plan("p1", ["calls"], unit_amount="0.02"),
        "metric": lambda: sample.metric("calls", "sum_agg", "n"),
        "customer": lambda: sample.customer("c1", timezone="Europe/Berlin"),
    }[kind]()
    started = time.perf_counter()
    view.apply(change)
    applied = time.perf_counter() - started
    assert applied < 0.01
    started = time.perf_counter()
    for organization_id, external_id in view.subscription_ids():
        view.terms(organization_id, external_id)
    renewed = time.perf_counter() - started
    assert renewed / 30_000 < 10e-6  # per subscription, lazily (a loaded machine: 5x)


class PlannedVisits:
    """A stand-in for the period closer: records what the driver plans."""

    def __init__(self) -> None:
        self.planned: list[tuple[str, str]] = []

    def plan(self, organization_id: str, external_id: str, due: float) -> None:
        self.planned.append((organization_id, external_id))


async def test_a_plan_change_is_planned_in_slices_that_give_the_loop_back() -> None:
    """The closing driver plans a change concerning many subscriptions 500 at a time, with
    the event loop given back between two slices (a million at once: seconds)."""
    sample, view = loaded(2_400)
    closer = PlannedVisits()
    settings = SimpleNamespace(
        bootstrap_servers="unused:9092", topics=SimpleNamespace(events="unused")
    )
    worker = SimpleNamespace(catalog=view, closer=closer, settings=settings)
    driver = ClosingDriver(worker)  # type: ignore[arg-type]
    driver.on_catalog([sample.plan("p1", ["calls"], unit_amount="0.02")])
    assert len(closer.planned) == SLICE  # the first slice at once
    for _ in range(2):
        await asyncio.sleep(0)
    assert len(closer.planned) == 2 * SLICE  # one more slice a turn of the loop
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(closer.planned) == sorted(("o1", f"s{i}") for i in range(0, 2_400, 2))
    driver.on_catalog([sample.customer("c2", timezone="Asia/Kolkata")])
    assert len(closer.planned) == 1_200 + SLICE


@pytest.mark.parametrize("headers", [True, False], ids=["by-headers", "without-headers"])
def test_a_view_keeps_the_subscriptions_of_its_partitions_and_drops_those_it_lost(
    headers: bool,
) -> None:
    """A worker's view holds the subscriptions of the events partitions it owns (hashed as
    ingest keys their events); read again after its partitions changed, it takes the ones
    it gained and drops the ones it lost, customers, plans and metrics kept whole. A record
    whose headers name a subscription it does not keep is skipped undecoded (its value here
    is not even JSON); records written before those headers are decoded, then filtered."""
    _, encoded = two_plans(40)
    home = {f"s{i}": partition_for(f"s{i}".encode(), 4) for i in range(40)}
    assert set(home.values()) == {0, 1, 2, 3}

    def read(view: CatalogView) -> None:
        for value in encoded:
            named = CatalogRecord.decode(value).headers if headers else []
            skipped = named and not view.keeps(named[1][1].decode())
            view.take(b"\xff not json" if skipped else value, named)

    view = CatalogView(4)
    view.kept = frozenset({0, 1})
    read(view)
    held = {ext for _, ext in view.subscription_ids()}
    assert held == {ext for ext, p in home.items() if p in (0, 1)}
    assert len(view) == len(held)
    assert all(view.terms("o1", ext) is not None for ext in held)
    assert all(view.terms("o1", ext) is None for ext in set(home) - held)
    view.kept = frozenset({1, 2})  # partitions moved: the topic read again
    read(view)
    assert {ext for _, ext in view.subscription_ids()} == {
        ext for ext, p in home.items() if p in (1, 2)
    }
    assert all(view.terms("o1", ext) is None for ext, p in home.items() if p == 0)
    # A customer's change concerns the subscriptions still held only.
    of_c1 = sorted(view.affected(CatalogRecord.decode(encoded[1])))
    assert of_c1 and all(home[ext] in (1, 2) for _, ext in of_c1)
