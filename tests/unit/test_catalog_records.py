"""The catalog topic's records: decoded to what was encoded, a wrong one refused naming its
field; a subscription's record names its organization and external id in its headers, what
a worker reads to skip it undecoded; other records name nothing."""

from __future__ import annotations

import orjson
import pytest

from aggregator.sample_catalog import SampleCatalog
from meterflow.catalog import CatalogRecord, subscription_of


def test_a_subscription_record_names_its_organization_and_external_id() -> None:
    record = SampleCatalog("org-é").subscription(
        "sub/1 ü", customer="c1", plan_code="p1", subscription_at="2026-01-05T00:00:00Z"
    )
    assert subscription_of(record.headers) == ("org-é", "sub/1 ü")
    assert CatalogRecord.decode(record.encode()).headers == record.headers


def test_other_records_and_foreign_headers_name_no_subscription() -> None:
    sample = SampleCatalog("o1")
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    sample.plan("p1", ["calls"])
    assert [r.headers for r in sample.records] == [[]] * 4
    deleted = CatalogRecord(sample.records[1].kind, "sub-x", "o1", 2, None)
    assert deleted.headers == []
    assert subscription_of(()) is None
    assert subscription_of((("trace", b"1"), ("external_id", b"s1"))) is None


def test_a_record_decodes_to_what_was_encoded_and_a_wrong_one_is_named() -> None:
    record = SampleCatalog("o1").plan("p1", [])
    assert CatalogRecord.decode(record.encode()) == record
    assert CatalogRecord.decode(record.encode()).kind is record.kind
    good = orjson.loads(record.encode())
    for change, field in (
        ({"kind": "invoice"}, "kind"),
        ({"version": "2"}, "version"),
        ({"lago_id": None}, "lago_id"),
    ):
        with pytest.raises(ValueError, match=field):
            CatalogRecord.decode(orjson.dumps({**good, **change}))
    with pytest.raises(ValueError, match="body"):
        CatalogRecord.decode(orjson.dumps({k: v for k, v in good.items() if k != "body"}))
    with pytest.raises(ValueError):
        CatalogRecord.decode(b"{not json")
