"""Events read back from the events topic (Lago's event debugger): listed newest first with
filters, found by transaction_id through Lago's client, and never another organization's."""

from __future__ import annotations

from typing import Any

import aiohttp
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, Event

Call = Any


async def test_events_listed_and_found_from_the_topic(
    make_tenant: Any, server: Any, call: Call
) -> None:
    acme, other = await make_tenant("Acme"), await make_tenant("Globex")
    await call(
        acme.client.events.create,
        Event(
            transaction_id="tx-1",
            external_subscription_id="sub-a",
            code="api_calls",
            timestamp=1767225600,
            properties={"region": "eu"},
        ),
    )
    await call(
        acme.client.events.batch_create,
        BatchEvent(
            events=[
                Event(transaction_id=f"tx-{i}", external_subscription_id="sub-b", code="storage")
                for i in (2, 3)
            ]
        ),
    )
    await call(
        other.client.events.create,
        Event(transaction_id="tx-9", external_subscription_id="sub-a", code="api_calls"),
    )

    found = await call(acme.client.events.find, "tx-1")
    assert (found.external_subscription_id, found.code) == ("sub-a", "api_calls")
    assert found.timestamp == "2026-01-01T00:00:00.000Z" and found.properties == {"region": "eu"}
    assert found.lago_id and found.created_at
    again = await call(acme.client.events.find, "tx-1")
    assert again.lago_id == found.lago_id, "an event's id is stable"
    try:
        await call(acme.client.events.find, "tx-9")
        raise AssertionError("another organization's event was found")
    except LagoApiError as exc:
        assert (exc.status_code, exc.response["code"]) == (404, "event_not_found")

    headers = {"Authorization": f"Bearer {acme.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server.url}/api/v1/events") as resp:
            listed = await resp.json()
        async with http.get(
            f"{server.url}/api/v1/events",
            params={"external_subscription_id": "sub-b", "per_page": "1", "page": "2"},
        ) as resp:
            page = await resp.json()
        async with http.get(
            f"{server.url}/api/v1/events", params={"timestamp_from": "yesterday"}
        ) as resp:
            assert resp.status == 422
            assert (await resp.json())["error_details"] == {"timestamp_from": ["invalid_date"]}
    assert sorted(e["transaction_id"] for e in listed["events"]) == ["tx-1", "tx-2", "tx-3"]
    assert listed["meta"]["total_count"] == 3
    assert [e["external_subscription_id"] for e in page["events"]] == ["sub-b"]
    assert page["meta"]["total_count"] == 2
