"""Bad input gets a 4xx in Lago's error shape, never a 500, and nothing half-written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.service import IngestServer

Call = Callable[..., Any]


async def request(
    server: IngestServer,
    method: str,
    path: str,
    *,
    key: str | None,
    body: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            server.url + path,
            json=body if data is None else None,
            data=data,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


def assert_lago_error(status: int, body: Any, expected_status: int) -> None:
    assert status == expected_status, body
    assert set(body) == {"status", "error", "code", "error_details"}, body
    assert body["status"] == expected_status
    assert isinstance(body["error"], str) and isinstance(body["code"], str)
    assert isinstance(body["error_details"], dict)


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "transaction_id": "tx-1",
        "external_subscription_id": "sub-1",
        "code": "calls",
        **overrides,
    }


@pytest.mark.parametrize(
    ("headers"),
    [None, "", "not-a-key", "Bearer ", "Token abc", "Bearer wrong-key"],
)
async def test_missing_or_wrong_key_is_401(server: IngestServer, headers: str | None) -> None:
    async with aiohttp.ClientSession() as session:
        h = {"Authorization": headers} if headers is not None else {}
        async with session.get(server.url + "/api/v1/customers", headers=h) as response:
            body = await response.json()
    assert_lago_error(response.status, body, 401)
    assert body["error"] == "Unauthorized"


@pytest.mark.parametrize(
    ("path", "data", "body", "status", "details"),
    [
        ("/api/v1/events", b"{not json", None, 400, {"body": ["invalid_json"]}),
        ("/api/v1/events", None, [1, 2], 400, {"event": ["value_is_mandatory"]}),
        ("/api/v1/events", None, {"event": "x"}, 400, {"event": ["value_is_mandatory"]}),
        ("/api/v1/events", None, {"event": event(), "more": 1}, 422, {"more": ["unknown_field"]}),
        (
            "/api/v1/events",
            None,
            {"event": event(colour="red")},
            422,
            {"colour": ["unknown_field"]},
        ),
        (
            "/api/v1/events",
            None,
            {"event": event(transaction_id=None)},
            422,
            {"transaction_id": ["value_is_mandatory"]},
        ),
        (
            "/api/v1/events",
            None,
            {"event": event(transaction_id=12, properties=None)},
            422,
            {"transaction_id": ["value_is_invalid"]},
        ),
        (
            "/api/v1/events",
            None,
            {"event": event(timestamp="next tuesday")},
            422,
            {"timestamp": ["value_is_invalid"]},
        ),
        (
            "/api/v1/events",
            None,
            {"event": event(properties=[1])},
            422,
            {"properties": ["value_is_invalid"]},
        ),
        ("/api/v1/events/batch", None, {"events": []}, 422, {"events": ["value_is_mandatory"]}),
        ("/api/v1/events/batch", None, {"events": {}}, 400, {"events": ["value_is_mandatory"]}),
        (
            "/api/v1/events/batch",
            None,
            {"events": [event(transaction_id=f"t{i}") for i in range(101)]},
            422,
            {"events": ["too_many_events"]},
        ),
        ("/api/v1/customers", b"[]", None, 400, {"customer": ["value_is_mandatory"]}),
        (
            "/api/v1/customers",
            None,
            {"customer": {"external_id": "c", "timezone": "Mars/Olympus"}},
            422,
            {"timezone": ["invalid_timezone"]},
        ),
        (
            "/api/v1/customers",
            None,
            {"customer": {"external_id": 7, "currency": "XXX", "nickname": "x"}},
            422,
            {
                "external_id": ["value_is_invalid"],
                "currency": ["value_is_invalid"],
                "nickname": ["unknown_field"],
            },
        ),
        (
            "/api/v1/billable_metrics",
            None,
            {"billable_metric": {"name": "GB", "code": "gb", "aggregation_type": "sum_agg"}},
            422,
            {"field_name": ["value_is_mandatory"]},
        ),
        (
            "/api/v1/billable_metrics",
            None,
            {"billable_metric": {"name": "GB", "code": "gb", "aggregation_type": "avg_agg"}},
            422,
            {"aggregation_type": ["value_is_invalid"]},
        ),
        (
            "/api/v1/subscriptions",
            None,
            {
                "subscription": {
                    "external_customer_id": "c",
                    "plan_code": "nope",
                    "external_id": "s",
                }
            },
            404,
            None,
        ),
        (
            "/api/v1/subscriptions",
            None,
            {
                "subscription": {
                    "external_customer_id": "c",
                    "plan_code": "p",
                    "billing_time": "weekly",
                }
            },
            422,
            {"external_id": ["value_is_mandatory"], "billing_time": ["value_is_invalid"]},
        ),
        ("/api/v1/nowhere", None, {}, 404, None),
    ],
)
async def test_bad_bodies_get_lago_errors(
    server: IngestServer,
    tenant: Any,
    path: str,
    data: bytes | None,
    body: Any,
    status: int,
    details: dict[str, Any] | None,
) -> None:
    got_status, got = await request(server, "POST", path, key=tenant.api_key, body=body, data=data)
    assert_lago_error(got_status, got, status)
    if details is not None:
        assert got["error_details"] == details
    if status == 404 and path.endswith("subscriptions"):
        assert got["code"] == "plan_not_found"


async def test_invalid_event_in_a_batch_refuses_the_whole_batch(
    server: IngestServer, tenant: Any, read_topic: Call, settings: Any
) -> None:
    events = [event(transaction_id="ok-1"), event(transaction_id=None), event(code=5)]
    status, body = await request(
        server, "POST", "/api/v1/events/batch", key=tenant.api_key, body={"events": events}
    )
    assert_lago_error(status, body, 422)
    assert set(body["error_details"]) == {"1", "2"}
    assert "transaction_id" in body["error_details"]["1"]
    assert "code" in body["error_details"]["2"]
    assert await read_topic(settings.topics.events, 1, timeout=3) == [], "nothing produced"


async def test_charge_properties_that_do_not_fit_the_model(
    server: IngestServer, tenant: Any, db: asyncpg.Connection
) -> None:
    status, metric = await request(
        server,
        "POST",
        "/api/v1/billable_metrics",
        key=tenant.api_key,
        body={
            "billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}
        },
    )
    assert status == 200, metric
    metric_id = metric["billable_metric"]["lago_id"]
    plan = {
        "name": "P",
        "code": "p",
        "interval": "monthly",
        "amount_cents": 100,
        "amount_currency": "EUR",
        "pay_in_advance": False,
    }
    for charge_model, properties in [
        ("standard", {"amount": "ten"}),
        ("graduated", {"graduated_ranges": "all"}),
        ("package", {"amount": "1", "package_size": 0}),
        ("volume", {}),
        ("percentage", {"rate": -1}),
        ("telepathy", {}),
    ]:
        charges = [
            {
                "billable_metric_id": metric_id,
                "charge_model": charge_model,
                "properties": properties,
            }
        ]
        status, body = await request(
            server,
            "POST",
            "/api/v1/plans",
            key=tenant.api_key,
            body={"plan": {**plan, "charges": charges}},
        )
        assert_lago_error(status, body, 422)
        assert all(k.startswith("charges.0.") for k in body["error_details"]), body
    status, body = await request(
        server,
        "POST",
        "/api/v1/plans",
        key=tenant.api_key,
        body={
            "plan": {
                **plan,
                "charges": [
                    {
                        "billable_metric_id": metric_id,
                        "charge_model": "standard",
                        "properties": {"amount": "1"},
                    },
                    {"billable_metric_id": metric_id, "charge_model": "standard", "properties": {}},
                ],
            }
        },
    )
    assert_lago_error(status, body, 422)
    assert await db.fetchval("SELECT count(*) FROM plans") == 0, "nothing half-written"
    assert await db.fetchval("SELECT count(*) FROM charges") == 0


async def test_organizations_see_only_their_own_data(
    server: IngestServer, make_tenant: Call
) -> None:
    a, b = await make_tenant("A", "Europe/Paris"), await make_tenant("B", "Asia/Tokyo")
    status, body = await request(
        server,
        "POST",
        "/api/v1/customers",
        key=a.api_key,
        body={"customer": {"external_id": "same-id"}},
    )
    assert status == 200 and body["customer"]["applicable_timezone"] == "Europe/Paris"
    status, body = await request(server, "GET", "/api/v1/customers/same-id", key=b.api_key)
    assert_lago_error(status, body, 404)
    assert body["code"] == "customer_not_found"
    status, body = await request(
        server,
        "POST",
        "/api/v1/customers",
        key=b.api_key,
        body={"customer": {"external_id": "same-id"}},
    )
    assert status == 200 and body["customer"]["applicable_timezone"] == "Asia/Tokyo"
    status, body = await request(server, "GET", "/api/v1/customers", key=a.api_key)
    assert body["meta"]["total_count"] == 1


async def test_concurrent_creates_of_one_name_make_one_object(
    server: IngestServer, tenant: Any, db: asyncpg.Connection
) -> None:
    results = await asyncio.gather(
        *(
            request(
                server,
                "POST",
                "/api/v1/customers",
                key=tenant.api_key,
                body={"customer": {"external_id": "race", "name": f"n{i}"}},
            )
            for i in range(10)
        ),
        *(
            request(
                server,
                "POST",
                "/api/v1/billable_metrics",
                key=tenant.api_key,
                body={
                    "billable_metric": {
                        "name": "M",
                        "code": "race",
                        "aggregation_type": "count_agg",
                    }
                },
            )
            for _ in range(5)
        ),
    )
    assert [status for status, _ in results[:10]] == [200] * 10, "upserts all succeed"
    assert sorted(status for status, _ in results[10:]) == [200, 422, 422, 422, 422]
    assert all(
        body["error_details"] == {"code": ["value_already_exist"]}
        for status, body in results[10:]
        if status == 422
    )
    assert await db.fetchval("SELECT count(*) FROM customers") == 1
    assert await db.fetchval("SELECT count(*) FROM billable_metrics") == 1
