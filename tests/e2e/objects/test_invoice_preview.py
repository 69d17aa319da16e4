"""`POST /api/v1/invoices/preview` through running ingest and aggregator processes: the next
invoice of a subscription from its live usage, priced as the invoicer would, and nothing of
it written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Event,
    InvoicePreview,
    Plan,
    Subscription,
    Tax,
)
from lago_python_client.models.subscription import Subscriptions

from gateway.organizations import create_organization
from meterflow.settings import Settings
from support.services import ServiceProcess, free_port, service_env


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    ports = {name: free_port() for name in ("api", "api_metrics", "agg", "agg_metrics")}
    env = service_env(
        settings,
        tmp_path,
        METERFLOW_INGEST_HOST="127.0.0.1",
        METERFLOW_INGEST_PORT=str(ports["api"]),
        METERFLOW_INGEST_METRICS_PORT=str(ports["api_metrics"]),
        METERFLOW_INGEST_OUTBOX_INTERVAL="0.5",
        METERFLOW_AGGREGATOR_URL=f"http://127.0.0.1:{ports['agg']}",
        METERFLOW_AGGREGATOR_PORT=str(ports["agg"]),
        METERFLOW_AGGREGATOR_METRICS_PORT=str(ports["agg_metrics"]),
        METERFLOW_AGGREGATOR_BATCH_WITHIN="0.05",
    )
    running = [ServiceProcess(n, env, tmp_path / f"{n}.log") for n in ("ingest", "aggregator")]
    for service in running:
        service.start()
    try:
        running[0].wait_http(f"http://127.0.0.1:{ports['api_metrics']}/metrics")
        running[1].wait_http(f"http://127.0.0.1:{ports['agg']}/ready")
        yield ports
    finally:
        codes = [s.stop() for s in reversed(running)]
    assert codes == [0, 0]


async def test_preview_prices_current_usage_and_writes_nothing(
    settings: Settings, services: dict[str, int], db: Any
) -> None:
    _, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=f"http://127.0.0.1:{services['api']}")

    def run(fn: Any, *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    await run(lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0))
    await run(
        lago.customers.create,
        Customer(external_id="c-1", name="Ada", currency="EUR", tax_codes=["vat"]),
    )
    metric = await run(
        lago.billable_metrics.create,
        BillableMetric(name="API calls", code="api_calls", aggregation_type="count_agg"),
    )
    await run(
        lago.plans.create,
        Plan(
            name="Team",
            code="team",
            interval="monthly",
            amount_cents=1000,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": "0.50"},
                    )
                ]
            ),
        ),
    )
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    await run(
        lago.subscriptions.create,
        Subscription(
            external_customer_id="c-1",
            plan_code="team",
            external_id="s-1",
            subscription_at=month_start.isoformat(),
        ),
    )
    await run(
        lago.events.batch_create,
        BatchEvent(
            events=[
                Event(transaction_id=f"t-{i}", external_subscription_id="s-1", code="api_calls")
                for i in range(7)
            ]
        ),
    )
    request = InvoicePreview(
        customer=Customer(external_id="c-1"),
        subscriptions=Subscriptions(external_ids=["s-1"]),
    )
    # The aggregator learns the subscription from the catalog topic, then counts the events.
    deadline = time.monotonic() + 60
    while True:
        try:
            preview = await run(lago.invoices.preview, request)
            if preview.fees_amount_cents == 1350:
                break
        except LagoApiError as exc:
            assert exc.status_code == 503, exc.response  # the aggregator not caught up yet
        assert time.monotonic() < deadline, "the preview never saw the 7 events"
        await asyncio.sleep(0.5)
    # 10.00 plan fee for the full month + 7 x 0.50 = 13.50; 20 % VAT 2.70; total 16.20 EUR.
    assert (preview.taxes_amount_cents, preview.total_amount_cents) == (270, 1620)
    assert sorted(f.amount_cents for f in preview.fees.__root__) == [350, 1000]
    assert await db.fetchval("SELECT count(*) FROM invoices") == 0, "a preview writes nothing"
    assert await db.fetchval("SELECT count(*) FROM invoice_sequences") == 0
