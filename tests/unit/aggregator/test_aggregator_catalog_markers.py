"""The catalog view (versions, deletions, joins) and marker segment expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregator.catalog_view import CatalogView
from aggregator.markers import (
    DedupeMarkers,
    NewMarker,
    expiry_day,
    legacy_marker_hash,
    marker_hash,
)
from aggregator.sample_catalog import SampleCatalog
from aggregator.store import MemoryStore
from meterflow.catalog import CatalogKind, CatalogRecord


def sample() -> SampleCatalog:
    catalog = SampleCatalog("o1", organization_timezone="Europe/Paris")
    catalog.organization()
    catalog.customer("c1", timezone="Asia/Tokyo")
    catalog.metric("calls")
    catalog.plan("p1", ["calls"], interval="weekly", currency="EUR")
    catalog.subscription(
        "s1", customer="c1", plan_code="p1", subscription_at="2026-01-05T00:00:00Z"
    )
    return catalog


def test_terms_join_subscription_plan_charges_metric_and_timezones() -> None:
    view = CatalogView()
    for record in sample().records:
        view.apply(record)
    terms = view.terms("o1", "s1")
    assert terms is not None
    assert (terms.interval, terms.currency, terms.timezone) == ("weekly", "EUR", "Asia/Tokyo")
    assert terms.organization_timezone == "Europe/Paris"
    assert [c.metric_code for c in terms.charges] == ["calls"]
    assert terms.subscription_at == datetime(2026, 1, 5, tzinfo=UTC)
    assert view.terms("o2", "s1") is None  # another organization's id space


def test_older_versions_are_ignored_and_deletion_forgets_the_subscription() -> None:
    catalog = sample()
    view = CatalogView()
    for record in catalog.records:
        view.apply(record)
    terminated = catalog.subscription(
        "s1",
        customer="c1",
        plan_code="p1",
        subscription_at="2026-01-05T00:00:00Z",
        terminated_at="2026-02-01T00:00:00Z",
    )
    assert terminated.version == 2
    view.apply(terminated)
    assert not view.apply(catalog.records[4])  # version 1 again: ignored
    terms = view.terms("o1", "s1")
    assert terms is not None and terms.terminated_at == datetime(2026, 2, 1, tzinfo=UTC)
    view.apply(CatalogRecord(CatalogKind.SUBSCRIPTION, terminated.lago_id, "o1", 3, None))
    assert view.terms("o1", "s1") is None


def test_markers_expire_by_day_and_only_on_owned_partitions() -> None:
    store = MemoryStore(raw=True)
    markers = DedupeMarkers(store)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    soon, later = expiry_day(now + timedelta(days=1)), expiry_day(now + timedelta(days=9))
    a, b = marker_hash("a"), marker_hash("b")
    markers.write([NewMarker("o1\x1fs1", a, 0, 10, soon), NewMarker("o1\x1fs1", b, 0, 11, later)])
    assert len(store) == 2 and len(markers) == 2
    # Partitions owned by another worker are left alone.
    assert markers.expire(now + timedelta(days=30), {1}) == (0, False)
    markers.invalidate()  # as after the rebalance that moved them
    assert markers.expire(now + timedelta(days=2), {0}) == (1, False)
    assert not markers.seen("o1\x1fs1", a)
    assert markers.seen("o1\x1fs1", b)
    assert len(store) == 1 and len(markers) == 1
    assert markers.expire(now + timedelta(days=11), {0}) == (1, False)
    assert len(store) == 0 and len(markers) == 0


def test_marker_hashes_are_stable_64_bit_values() -> None:
    """Stable across processes (a restarted worker recovers them), unlike hash()."""
    assert marker_hash("tx_1") == marker_hash("tx_1") != marker_hash("tx_2")
    assert 0 <= marker_hash("tx_1") < 2**64
    assert marker_hash("tx_1") == 0x03A06DBAFCE201F7  # XXH3-64 of the UTF-8 id (version 2)
    # Version 1, still read: BLAKE2b-64 of the UTF-8 id, little-endian.
    assert legacy_marker_hash("tx_1") == 0x8185C0BBA57AB486
