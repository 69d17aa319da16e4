"""Lago's own Python client drives a real ingest server: the catalog lands in Postgres and
on the catalog topic, and every accepted event is on the events topic, keyed by subscription."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    BillableMetricFilter,
    BillableMetricFilters,
    Charge,
    Charges,
    Customer,
    CustomerBillingConfiguration,
    Event,
    Plan,
    Subscription,
)

from billing.events import event_from_wire
from meterflow.catalog import CatalogKind
from meterflow.event_records import PACK_LIMIT, decode_record, position
from meterflow.settings import Settings

Call = Callable[..., Any]


async def test_customer_create_upsert_find_list_delete(
    tenant: Any, call: Call, read_catalog: Call
) -> None:
    lago = tenant.client
    created = await call(
        lago.customers.create,
        Customer(
            external_id="cust-1",
            name="Ada",
            currency="EUR",
            timezone="Europe/Paris",
            email="ada@example.com",
            billing_configuration=CustomerBillingConfiguration(
                payment_provider="stripe", provider_customer_id="cus_123"
            ),
        ),
    )
    assert created.external_id == "cust-1"
    assert created.applicable_timezone == "Europe/Paris"
    assert created.billing_configuration.payment_provider == "stripe"

    updated = await call(lago.customers.create, Customer(external_id="cust-1", name="Ada L."))
    assert updated.lago_id == created.lago_id, "a second POST with the same external_id updates"
    assert (updated.name, updated.currency, updated.timezone) == ("Ada L.", "EUR", "Europe/Paris")
    assert updated.billing_configuration.provider_customer_id == "cus_123"

    found = await call(lago.customers.find, "cust-1")
    assert found.name == "Ada L."
    await call(lago.customers.create, Customer(external_id="cust-2"))
    listed = await call(lago.customers.find_all, {"per_page": 1, "page": 2})
    assert len(listed["customers"]) == 1
    assert listed["meta"] == {
        "current_page": 2,
        "next_page": None,
        "prev_page": 1,
        "total_pages": 2,
        "total_count": 2,
    }

    deleted = await call(lago.customers.destroy, "cust-2")
    assert deleted.external_id == "cust-2"
    with pytest.raises(LagoApiError) as missing:
        await call(lago.customers.find, "cust-2")
    assert missing.value.status_code == 404

    # organization, cust-1 twice, cust-2 created then deleted (null body, next version)
    records = await read_catalog(5)
    versions = [(r.lago_id, r.version, r.body is None) for r in records[1:]]
    assert versions == [
        (created.lago_id, 1, False),
        (created.lago_id, 2, False),
        (deleted.lago_id, 1, False),
        (deleted.lago_id, 2, True),
    ]
    assert records[1].body == {**records[1].body, "external_id": "cust-1", "currency": "EUR"}


async def test_catalog_then_events_reach_kafka(
    tenant: Any, settings: Settings, call: Call, read_topic: Call, read_catalog: Call
) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="cust-1", timezone="Asia/Kolkata"))
    calls = await call(
        lago.billable_metrics.create,
        BillableMetric(name="API calls", code="calls", aggregation_type="count_agg"),
    )
    storage = await call(
        lago.billable_metrics.create,
        BillableMetric(
            name="Storage",
            code="gb",
            aggregation_type="sum_agg",
            field_name="gb",
            filters=BillableMetricFilters(
                __root__=[BillableMetricFilter(key="region", values=["eu", "us"])]
            ),
        ),
    )
    assert storage.filters.__root__[0].values == ["eu", "us"]
    plan = await call(
        lago.plans.create,
        Plan(
            name="Startup",
            code="startup",
            interval="monthly",
            amount_cents=1000,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=calls.lago_id,
                        charge_model="standard",
                        properties={"amount": "0.01"},
                    ),
                    Charge(
                        billable_metric_id=storage.lago_id,
                        charge_model="graduated",
                        properties={
                            "graduated_ranges": [
                                {
                                    "from_value": 0,
                                    "to_value": 10,
                                    "per_unit_amount": "0",
                                    "flat_amount": "0",
                                },
                                {
                                    "from_value": 11,
                                    "to_value": None,
                                    "per_unit_amount": "0.5",
                                    "flat_amount": "1",
                                },
                            ]
                        },
                    ),
                ]
            ),
        ),
    )
    charges = plan.charges.__root__
    assert [c.billable_metric_code for c in charges] == ["calls", "gb"]
    subscription = await call(
        lago.subscriptions.create,
        Subscription(
            external_customer_id="cust-1",
            plan_code="startup",
            external_id="sub-1",
            billing_time="anniversary",
            subscription_at="2026-01-31T10:00:00Z",
        ),
    )
    assert (subscription.status, subscription.billing_time) == ("active", "anniversary")
    assert subscription.started_at == "2026-01-31T10:00:00Z"

    single = await call(
        lago.events.create,
        Event(transaction_id="tx-0", external_subscription_id="sub-1", code="calls"),
    )
    assert single.transaction_id == "tx-0" and single.timestamp
    await call(
        lago.events.batch_create,
        BatchEvent(
            events=[
                Event(
                    transaction_id=f"tx-{i}",
                    external_subscription_id="sub-1",
                    code="gb",
                    timestamp=1767225600 + i,
                    properties={"gb": i, "region": "eu"},
                )
                for i in range(1, 6)
            ]
        ),
    )
    # A client retry: answered 200 again, dropped downstream by the aggregator.
    await call(
        lago.events.create,
        Event(transaction_id="tx-0", external_subscription_id="sub-1", code="calls"),
    )

    events = await read_topic(settings.topics.events, 7)
    assert len(events) == 7
    assert {value["external_subscription_id"] for _, value in events} == {"sub-1"}
    assert all(value["organization_id"] == tenant.organization_id for _, value in events)
    assert sorted(value["transaction_id"] for _, value in events) == [
        "tx-0",
        "tx-0",
        "tx-1",
        "tx-2",
        "tx-3",
        "tx-4",
        "tx-5",
    ]
    by_tx = {value["transaction_id"]: value for _, value in events}
    assert by_tx["tx-3"]["properties"] == {"gb": 3, "region": "eu"}
    # The value is billing's wire schema plus organization_id, which readers remove.
    wired = event_from_wire({k: v for k, v in by_tx["tx-3"].items() if k != "organization_id"})
    assert wired.timestamp == datetime.fromtimestamp(1767225603, UTC)

    # organization, customer, 2 metrics, plan, subscription
    records = await read_catalog(6)
    kinds = {(r.kind, r.lago_id): r for r in records}
    assert (CatalogKind.ORGANIZATION, tenant.organization_id) in kinds
    sub_record = kinds[(CatalogKind.SUBSCRIPTION, subscription.lago_id)]
    assert sub_record.organization_id == tenant.organization_id
    body = sub_record.body
    assert body is not None
    assert body["external_id"] == "sub-1"
    assert body["lago_plan_id"] == plan.lago_id
    assert body["applicable_timezone"] == "Asia/Kolkata"
    assert body["billing_time"] == "anniversary"
    plan_body = kinds[(CatalogKind.PLAN, plan.lago_id)].body
    assert plan_body is not None
    assert [c["lago_id"] for c in plan_body["charges"]] == [c.lago_id for c in charges]
    assert plan_body["charges"][1]["lago_billable_metric_id"] == storage.lago_id
    assert plan_body["charges"][1]["billable_metric_id"] == storage.lago_id


async def test_terminating_a_subscription(tenant: Any, call: Call, read_catalog: Call) -> None:
    lago = tenant.client
    await call(
        lago.plans.create,
        Plan(
            name="Basic",
            code="basic",
            interval="yearly",
            amount_cents=0,
            amount_currency="USD",
            pay_in_advance=True,
        ),
    )
    created = await call(
        lago.subscriptions.create,
        Subscription(external_customer_id="new-cust", plan_code="basic", external_id="s-9"),
    )
    assert created.status == "active" and created.billing_time == "calendar"
    assert (await call(lago.customers.find, "new-cust")).external_id == "new-cust"
    terminated = await call(lago.subscriptions.destroy, "s-9")
    assert terminated.status == "terminated" and terminated.terminated_at is not None
    found = await call(lago.subscriptions.find, "s-9")
    assert found.status == "terminated"
    active = await call(lago.subscriptions.find_all, {"external_customer_id": "new-cust"})
    assert active["subscriptions"] == []
    # The customer's own list (no client method): the same filters under its path.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tenant.api_key}"}) as http:
        url = f"{lago.api_url}/api/v1/customers/new-cust/subscriptions"
        async with http.get(url, params={"status[]": "terminated"}) as response:
            listed = await response.json()
    assert [s["external_id"] for s in listed["subscriptions"]] == ["s-9"]
    every = await call(
        lago.subscriptions.find_all, {"status[]": ["active", "terminated"], "plan_code": "basic"}
    )
    assert [s.external_id for s in every["subscriptions"]] == ["s-9"]

    records = await read_catalog(5)  # organization, plan, customer, subscription twice
    subscription_records = [r for r in records if r.kind == CatalogKind.SUBSCRIPTION]
    assert [r.version for r in subscription_records] == [1, 2]
    assert subscription_records[-1].body is not None
    assert subscription_records[-1].body["status"] == "terminated"


async def test_plan_update_keeps_charge_ids_and_metric_update(tenant: Any, call: Call) -> None:
    lago = tenant.client
    metric = await call(
        lago.billable_metrics.create,
        BillableMetric(
            name="Seats", code="seats", aggregation_type="unique_count_agg", field_name="user"
        ),
    )
    plan = await call(
        lago.plans.create,
        Plan(
            name="Team",
            code="team",
            interval="monthly",
            amount_cents=500,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="package",
                        properties={"amount": "5", "package_size": 10, "free_units": 0},
                    )
                ]
            ),
        ),
    )
    charge_id = plan.charges.__root__[0].lago_id
    updated = await call(
        lago.plans.update,
        Plan(
            name="Team 2",
            charges=Charges(
                __root__=[
                    Charge(
                        id=charge_id,
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": "1"},
                    ),
                    Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": "2"},
                    ),
                ]
            ),
        ),
        "team",
    )
    assert updated.name == "Team 2"
    assert updated.charges.__root__[0].lago_id == charge_id
    assert updated.charges.__root__[0].charge_model == "standard"
    assert len(updated.charges.__root__) == 2

    renamed = await call(lago.billable_metrics.update, BillableMetric(name="Active seats"), "seats")
    assert (renamed.name, renamed.field_name) == ("Active seats", "user")
    listed = await call(lago.plans.find_all)
    assert [p.code for p in listed["plans"]] == ["team"]
    await call(lago.billable_metrics.destroy, "seats")
    assert (await call(lago.plans.find, "team")).charges.__root__ == []
    await call(lago.plans.destroy, "team")
    with pytest.raises(LagoApiError) as missing:
        await call(lago.plans.find, "team")
    assert missing.value.status_code == 404


async def test_concurrent_batches_land_on_the_default_partitioners_partition_in_order(
    tenant: Any, settings: Settings, server: Any
) -> None:
    """Every event lands on the partition the producer's default partitioner (murmur2, as
    Java's and the aggregator's routing) gives its key, a request's events of one partition
    together in one record (a pack, which concurrent requests' events may share), in order,
    also when concurrent batches share the broker's batches."""
    requests, size = 6, 100

    def batch(request: int) -> dict[str, Any]:
        return {
            "events": [
                {
                    "transaction_id": f"r{request}-{i}",
                    "external_subscription_id": f"sub-{(request * 11 + i * 7) % 37}",
                    "code": "calls",
                    "properties": {"n": i},
                }
                for i in range(size)
            ]
        }

    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def post(request: int) -> int:
            async with session.post(
                server.url + "/api/v1/events/batch", json=batch(request)
            ) as response:
                return response.status

        assert await asyncio.gather(*(post(r) for r in range(requests))) == [200] * requests

    topic = settings.topics.events
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 20
        events = 0
        while events < requests * size and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(messages)
                events += sum(len(decode_record(message.value)) for message in messages)
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
    finally:
        await consumer.stop()

    assert len(partitions) == settings.partitions > 1
    positions: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (request, partition)
    seen = 0
    for record in records:
        items = decode_record(record.value)
        # A pack (no key): each request's events of the partition in one run of it.
        assert record.key is None
        runs = [int(item["transaction_id"][1:].split("-")[0]) for item in items]
        merged = [request for n, request in enumerate(runs) if n == 0 or runs[n - 1] != request]
        assert len(merged) == len(set(merged)), f"a request's events split in a record: {runs}"
        for at, value in enumerate(items):
            seen += 1
            assert value["organization_id"] == tenant.organization_id
            key = value["external_subscription_id"].encode()
            assert record.partition == (murmur2(key) & 0x7FFFFFFF) % len(partitions)
            request, index = (int(part) for part in value["transaction_id"][1:].split("-"))
            assert value["properties"] == {"n": index}
            positions.setdefault((request, record.partition), []).append(
                (position(record.offset, at), index)
            )
    assert seen == requests * size, "every event once, none missing or extra"
    for (request, partition), found in positions.items():
        indexes = [index for _, index in sorted(found)]
        assert indexes == sorted(indexes), f"request {request} out of order on {partition}"
        offsets = {at // PACK_LIMIT for at, _ in found}  # (a position: its record's offset)
        assert len(offsets) == 1, f"request {request} in several records on {partition}"
