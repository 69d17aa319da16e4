"""The invoices API through Lago's own Python client: list with filters and pagination,
read one with its fees, finalize a draft, and no organization sees another's invoices."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError

from gateway.organizations import create_organization
from gateway.service import IngestServer
from meterflow.settings import Settings
from web.settings import IngestSettings


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[IngestServer]:
    server = IngestServer(
        settings, IngestSettings(host="127.0.0.1", port=0, metrics_port=0, outbox_interval=0.5)
    )
    async with server:
        yield server


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_invoices_through_the_lago_client(
    kit: Any, settings: Settings, api: IngestServer, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    other_org, other_key = await create_organization(settings, "Globex", "UTC")
    client = Client(api_key=key, api_url=api.url)
    stranger = Client(api_key=other_key, api_url=api.url)
    plain = await kit.catalog(organization_id=org.id)
    graced = await kit.catalog(organization_id=org.id, grace_days=30)
    foreign = await kit.catalog(organization_id=other_org.id)
    now = datetime.now(UTC).replace(microsecond=0)
    await kit.publish(
        plain.closed(
            utc(2026, 1, 15, 10),
            utc(2026, 2, 1),
            [
                plain.usage(plain.standard_charge, "standard", 1234),
                plain.usage(plain.graduated_charge, "graduated", 250),
            ],
        ),
        plain.closed(utc(2026, 2, 1), utc(2026, 3, 1), []),
        graced.closed(datetime(now.year, now.month, 1, tzinfo=UTC), now, []),
        foreign.closed(utc(2026, 2, 1), utc(2026, 3, 1), []),
    )
    async with start_invoicer():
        await kit.wait_for_invoices(4)

    listed = await call(
        client.invoices.find_all, {"external_customer_id": plain.external_customer_id}
    )
    assert listed["meta"]["total_count"] == 2
    january = next(i for i in listed["invoices"] if i.issuing_date == "2026-02-01")
    assert january.fees_amount_cents == 8568
    assert january.total_amount_cents == 8568
    assert january.invoice_type == "subscription"
    assert january.status == "finalized"
    assert january.payment_status == "pending"
    assert january.customer.external_id == plain.external_customer_id

    found = await call(client.invoices.find, january.lago_id)
    assert [(f.item.type, f.amount_cents) for f in found.fees.__root__] == [
        ("subscription", 548),
        ("charge", 6170),
        ("charge", 1850),
    ]
    assert found.fees.__root__[1].units == "1234"
    assert found.fees.__root__[1].events_count == 1234
    assert found.fees.__root__[2].amount_details["graduated_ranges"][0]["units"] == "100"
    assert found.subscriptions.__root__[0].external_id == plain.external_subscription_id
    period = found.billing_periods.__root__[0]
    assert period.charges_from_datetime == "2026-01-15T10:00:00Z"
    assert period.charges_to_datetime == "2026-02-01T00:00:00Z"

    page = await call(client.invoices.find_all, {"per_page": 1, "page": 2})
    assert page["meta"]["total_count"] == 3
    assert page["meta"]["current_page"] == 2
    assert len(page["invoices"]) == 1

    drafts = await call(client.invoices.find_all, {"status": "draft"})
    assert [i.status for i in drafts["invoices"]] == ["draft"]
    window = await call(
        client.invoices.find_all,
        {"issuing_date_from": "2026-02-01", "issuing_date_to": "2026-02-28"},
    )
    assert [i.issuing_date for i in window["invoices"]] == ["2026-02-01"]

    finalized = await call(client.invoices.finalize, drafts["invoices"][0].lago_id)
    assert finalized.status == "finalized"
    again = await call(client.invoices.finalize, drafts["invoices"][0].lago_id)
    assert again.status == "finalized"
    assert (await call(client.invoices.find_all, {"status": "draft"}))["meta"]["total_count"] == 0

    # Another organization sees none of these.
    with pytest.raises(LagoApiError) as missing:
        await call(stranger.invoices.find, january.lago_id)
    assert missing.value.status_code == 404
    with pytest.raises(LagoApiError):
        await call(stranger.invoices.finalize, january.lago_id)
    theirs = await call(stranger.invoices.find_all, {})
    assert theirs["meta"]["total_count"] == 1
    with pytest.raises(LagoApiError) as unknown:
        await call(client.invoices.find, str(uuid.uuid4()))
    assert unknown.value.status_code == 404


async def test_bad_filters_are_422_in_lagos_shape(
    kit: Any, settings: Settings, api: IngestServer
) -> None:
    _, key = await create_organization(settings, "Acme", "UTC")
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        for query, field in (
            ("issuing_date_from=yesterday", "issuing_date_from"),
            ("status=paid", "status"),
            ("statuses[]=nope", "status"),
        ):
            async with session.get(f"{api.url}/api/v1/invoices?{query}", headers=headers) as r:
                assert r.status == 422
                body = await r.json()
                assert body["code"] == "validation_errors"
                assert field in body["error_details"]
        async with session.get(f"{api.url}/api/v1/invoices/not-a-uuid", headers=headers) as r:
            assert r.status == 404
            assert (await r.json())["code"] == "invoice_not_found"
        async with session.get(f"{api.url}/api/v1/invoices") as r:
            assert r.status == 401
