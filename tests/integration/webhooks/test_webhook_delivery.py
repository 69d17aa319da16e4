"""Webhooks through Lago's Python client: endpoints CRUD, signed deliveries received once
per unique key although the receiver fails the first tries, each attempt recorded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections import Counter
from typing import Any

import asyncpg
import jwt
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Plan, Subscription, WebhookEndpoint

from integration.webhooks.conftest import eventually
from support.webhook_receiver import WebhookReceiver

Call = Any


async def test_webhook_endpoints_crud(tenant: Any, call: Call) -> None:
    lago = tenant.client
    created = await call(
        lago.webhook_endpoints.create,
        WebhookEndpoint(webhook_url="https://example.com/a", name="main", event_types=None),
    )
    assert created.signature_algo == "hmac" and created.event_types is None
    assert created.lago_organization_id == tenant.organization_id
    found = await call(lago.webhook_endpoints.find, created.lago_id)
    assert found.webhook_url == "https://example.com/a"
    updated = await call(
        lago.webhook_endpoints.update,
        WebhookEndpoint(
            webhook_url="https://example.com/b",
            signature_algo="jwt",
            event_types=["invoice.created"],
        ),
        created.lago_id,
    )
    assert (updated.webhook_url, updated.signature_algo) == ("https://example.com/b", "jwt")
    assert updated.event_types == ["invoice.created"]
    listed = await call(lago.webhook_endpoints.find_all)
    assert [e.lago_id for e in listed["webhook_endpoints"]] == [created.lago_id]
    try:
        await call(
            lago.webhook_endpoints.create,
            WebhookEndpoint(webhook_url="ftp://nope", event_types=["invoice.nope"]),
        )
        raise AssertionError("an invalid endpoint was accepted")
    except LagoApiError as exc:
        assert exc.status_code == 422
        assert exc.response["error_details"] == {
            "webhook_url": ["url_is_invalid"],
            "event_types": ["value_is_invalid"],
        }
    deleted = await call(lago.webhook_endpoints.destroy, created.lago_id)
    assert deleted.lago_id == created.lago_id
    try:
        await call(lago.webhook_endpoints.find, created.lago_id)
        raise AssertionError("a deleted endpoint was found")
    except LagoApiError as exc:
        assert exc.status_code == 404
        assert exc.response["code"] == "webhook_endpoint_not_found"


async def test_signed_deliveries_once_per_unique_key_despite_failures(
    tenant: Any, call: Call, run_worker: Any, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    async with WebhookReceiver(fail_first=2) as hmac_rx, WebhookReceiver() as jwt_rx:
        await call(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url=hmac_rx.url))
        await call(
            lago.webhook_endpoints.create,
            WebhookEndpoint(
                webhook_url=jwt_rx.url, signature_algo="jwt", event_types=["customer.created"]
            ),
        )
        await call(lago.customers.create, Customer(external_id="c-1", name="Ada"))
        await call(lago.customers.create, Customer(external_id="c-1", name="Ada L."))
        await call(
            lago.plans.create,
            Plan(name="P", code="p", interval="monthly", amount_cents=1000, amount_currency="EUR"),
        )
        await call(
            lago.subscriptions.create,
            Subscription(external_customer_id="c-1", plan_code="p", external_id="s-1"),
        )
        await call(lago.subscriptions.destroy, "s-1")
        async with run_worker(jwt_issuer="https://billing.example.com"):
            await eventually(
                lambda: len(hmac_rx.accepted) == 4 and len(jwt_rx.accepted) == 1,
                what="every webhook delivered",
            )
        public_pem = await call(lago.webhooks.public_key)

    hmac_key = await db.fetchval("SELECT hmac_key FROM webhook_keys")
    delivered = hmac_rx.delivered()
    assert set(hmac_rx.accepted.values()) == {1}, "each unique key accepted exactly once"
    assert Counter(r.unique_key for r in hmac_rx.requests) == dict.fromkeys(delivered, 3)
    types = []
    for received in delivered.values():
        expected = base64.b64encode(
            hmac.new(hmac_key.encode(), received.body, hashlib.sha256).digest()
        ).decode()
        assert received.algorithm == "hmac" and received.signature == expected
        payload = received.payload
        assert payload["organization_id"] == tenant.organization_id
        assert payload[payload["object_type"]]["lago_id"]
        types.append(payload["webhook_type"])
    assert sorted(types) == [
        "customer.created",
        "customer.updated",
        "subscription.started",
        "subscription.terminated",
    ]
    (jwt_received,) = jwt_rx.delivered().values()
    assert jwt_received.algorithm == "jwt"
    claims = jwt.decode(
        jwt_received.signature,
        public_pem,
        algorithms=["RS256"],
        issuer="https://billing.example.com",  # checked, as Lago's docs check theirs
    )
    assert claims["data"] == jwt_received.body.decode()
    assert jwt_received.payload["customer"]["external_id"] == "c-1"

    attempts = await db.fetch(
        "SELECT webhook_id::text AS webhook_id, outcome, http_status FROM webhook_attempts "
        "ORDER BY webhook_id, attempt"
    )
    per_webhook: dict[str, list[tuple[str, int]]] = {}
    for a in attempts:
        per_webhook.setdefault(a["webhook_id"], []).append((a["outcome"], a["http_status"]))
    for key in delivered:
        assert per_webhook[key] == [("retrying", 500), ("retrying", 500), ("succeeded", 200)]
    statuses = await db.fetch("SELECT status, count(*) FROM webhooks GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses} == {"succeeded": 5}


async def test_subscribing_an_unknown_customer_announces_both(
    tenant: Any, call: Call, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    await call(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url="https://example.com"))
    await call(
        lago.plans.create,
        Plan(name="P", code="p", interval="monthly", amount_cents=1000, amount_currency="EUR"),
    )
    await call(
        lago.subscriptions.create,
        Subscription(external_customer_id="new-1", plan_code="p", external_id="s-1"),
    )
    queued = await db.fetch(
        "SELECT webhook_type, payload -> object_type ->> 'external_id' AS external_id "
        "FROM webhooks ORDER BY created_at, webhook_type"
    )
    assert [(q["webhook_type"], q["external_id"]) for q in queued] == [
        ("customer.created", "new-1"),
        ("subscription.started", "s-1"),
    ]


async def test_the_operator_reads_the_hmac_secret_with_the_cli(
    tenant: Any, settings: Any, db: asyncpg.Connection, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from support.services import service_env

    env = service_env(settings, tmp_path)

    def secret(organization: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "meterflow.cli",
                "webhook-secret",
                "--organization",
                organization,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = await asyncio.to_thread(secret, tenant.organization_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == await db.fetchval("SELECT hmac_key FROM webhook_keys")
    unknown = await asyncio.to_thread(secret, "not-an-id")
    assert unknown.returncode == 1 and "not an organization id" in unknown.stderr
