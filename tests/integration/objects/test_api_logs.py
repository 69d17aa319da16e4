"""API logs: each write request of an organization's key is recorded with its body and
answer (errors too) and read back through Lago's client with its filters; events, reads and
requests without a valid key are not logged; another organization sees none of them."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Event


async def test_write_requests_are_logged_and_read_back(
    tenant: Any, make_tenant: Any, call: Any, server: Any
) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c1", name="First"))
    await call(lago.customers.create, Customer(external_id="c1", name="Renamed"))
    with pytest.raises(LagoApiError):
        await call(lago.customers.create, Customer(external_id="c2", currency="XXX"))
    await call(lago.customers.find, "c1")
    await call(
        lago.events.create, Event(transaction_id="t1", external_subscription_id="s", code="x")
    )
    await call(lago.customers.destroy, "c1")
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer wrong"}
        async with http.post(f"{server.url}/api/v1/customers", json={}, headers=headers) as r:
            assert r.status == 401
        headers = {"Authorization": f"Bearer {tenant.api_key}"}
        body = {"customer": {"external_id": "c3"}}
        async with http.post(f"{server.url}/api/v1/customers", json=body, headers=headers) as r:
            request_id = r.headers["X-Request-Id"]

    logs = (await call(lago.api_logs.find_all))["api_logs"]
    assert [(log.http_method, log.request_path, log.http_status) for log in logs] == [
        ("post", "/customers", 200),
        ("delete", "/customers/c1", 200),
        ("post", "/customers", 422),
        ("post", "/customers", 200),
        ("post", "/customers", 200),
    ], "newest first; the read, the event and the unauthenticated request are not logged"
    renamed = logs[3]
    assert renamed.request_body["customer"]["name"] == "Renamed"
    assert renamed.request_response["customer"]["name"] == "Renamed"
    assert logs[2].request_response["error_details"] == {"currency": ["value_is_invalid"]}
    assert renamed.client.startswith("Lago Python v")

    found = await call(lago.api_logs.find, request_id)
    assert (found.request_id, found.request_body) == (request_id, body)
    failed = await call(lago.api_logs.find_all, {"http_statuses[]": "failed"})
    assert [log.http_status for log in failed["api_logs"]] == [422]
    deletes = await call(lago.api_logs.find_all, {"http_methods[]": "delete"})
    assert [log.request_path for log in deletes["api_logs"]] == ["/customers/c1"]

    other = await make_tenant("Other")
    assert (await call(other.client.api_logs.find_all))["api_logs"] == []
    with pytest.raises(LagoApiError) as missing:
        await call(other.client.api_logs.find, request_id)
    assert missing.value.status_code == 404
