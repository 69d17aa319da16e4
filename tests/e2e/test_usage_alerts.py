"""Usage alerts through running services: events sent over HTTP reach the aggregator, the
webhooks service's monitor sees the current usage cross an alert's thresholds and a signed
`alert.triggered` reaches the endpoint, once per crossing, with the values crossed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lago_python_client.client import Client
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Event,
    Plan,
    Subscription,
    WebhookEndpoint,
)
from lago_python_client.models.alert import Alert, AlertsList, AlertThreshold, AlertThresholdList

from gateway.organizations import create_organization
from meterflow.settings import Settings
from support.services import running_services
from support.webhook_receiver import WebhookReceiver


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    with running_services(
        settings,
        tmp_path,
        ("ingest", "aggregator", "webhooks"),
        METERFLOW_ALERTS_INTERVAL="0.3",
    ) as ports:
        yield ports


async def until(probe: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"{probe.__name__} gave nothing for {timeout}s"
        await asyncio.sleep(0.2)
    return found


async def test_crossing_thresholds_sends_alert_triggered_once_each(
    settings: Settings, services: dict[str, int]
) -> None:
    _, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=f"http://127.0.0.1:{services['api']}")

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    async with WebhookReceiver() as receiver:
        await run(lago.webhook_endpoints.create, WebhookEndpoint(webhook_url=receiver.url))
        metric = await run(
            lago.billable_metrics.create,
            BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"),
        )
        charge = Charge(
            billable_metric_id=metric.lago_id, charge_model="standard", properties={"amount": "1"}
        )
        plan = Plan(
            name="P",
            code="p",
            interval="monthly",
            amount_cents=0,
            amount_currency="EUR",
            charges=Charges(__root__=[charge]),
        )
        await run(lago.plans.create, plan)
        await run(lago.customers.create, Customer(external_id="c1", currency="EUR"))
        await run(
            lago.subscriptions.create,
            Subscription(external_customer_id="c1", plan_code="p", external_id="s1"),
        )
        spend = AlertThresholdList(
            __root__=[
                AlertThreshold(code="warn", value="500", recurring=False),
                AlertThreshold(code="again", value="300", recurring=True),
            ]
        )
        alert = Alert(alert_type="current_usage_amount", code="spend", thresholds=spend)
        lifetime = Alert(
            alert_type="lifetime_usage_amount",
            code="lifetime",
            thresholds=AlertThresholdList(__root__=[AlertThreshold(value="1500")]),
        )
        await run(lago.subscriptions.create_alerts, "s1", AlertsList(alerts=[alert, lifetime]))
        # 10.00 EUR of usage before meterflow: lifetime usage starts there.
        stated = await run(lago.subscriptions.update_lifetime_usage, "s1", 1000)
        assert stated.external_historical_usage_amount_cents == 1000
        assert stated.invoiced_usage_amount_cents == 0

        stamp = int(datetime.now(UTC).timestamp())

        async def send(first: int, count: int) -> None:
            events = [
                Event(
                    transaction_id=f"tx-{i}",
                    external_subscription_id="s1",
                    code="calls",
                    timestamp=stamp,
                )
                for i in range(first, first + count)
            ]
            await run(lago.events.batch_create, BatchEvent(events=events))

        def triggered(n: int, code: str = "spend") -> Callable[[], list[dict[str, Any]] | None]:
            def probe() -> list[dict[str, Any]] | None:
                found = [
                    r.payload
                    for r in receiver.requests
                    if r.payload["webhook_type"] == "alert.triggered"
                    and r.payload["triggered_alert"]["alert_code"] == code
                ]
                return found if len(found) >= n else None

            return probe

        await send(0, 4)  # 4.00 EUR: below 5.00
        await send(4, 3)  # 7.00 EUR: crosses 5.00
        first = (await until(triggered(1)))[0]
        assert first["object_type"] == "triggered_alert"
        body = first["triggered_alert"]
        assert (body["alert_code"], body["external_subscription_id"]) == ("spend", "s1")
        assert body["external_customer_id"] == "c1" and body["current_value"] >= 500
        assert body["crossed_thresholds"][0]["value"] == "500"

        await send(7, 5)  # 12.00 EUR: the recurring 3.00 above 5.00 reaches 8.00 and 11.00
        await until(triggered(2))
        await asyncio.sleep(1.5)  # several more checks: nothing is announced twice
        bodies = [p["triggered_alert"] for p in triggered(1)() or []]
        crossed = [t["value"] for b in bodies for t in b["crossed_thresholds"]]
        assert crossed == ["500", "800", "1100"], "each threshold once, in order"
        assert bodies[-1]["current_value"] == 1200
        url = f"http://127.0.0.1:{services['api']}/api/v1/subscriptions/s1/alerts/spend"
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
            http.get(url) as response,
        ):
            seen = (await response.json())["alert"]
        assert seen["previous_value"] == 1200 and seen["last_processed_at"] is not None

        # Lifetime: 10.00 stated + 12.00 this period crossed 15.00, once.
        hits = await until(triggered(1, "lifetime"))
        assert [h["triggered_alert"]["crossed_thresholds"][0]["value"] for h in hits] == ["1500"]
        usage = await run(lago.subscriptions.lifetime_usage, "s1")
        assert usage.current_usage_amount_cents == 1200
        assert usage.external_historical_usage_amount_cents == 1000
