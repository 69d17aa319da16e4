"""A failure inside the worker's current-usage view is a bug, not unavailability: a 500 in
Lago's shape, logged with the subscription and the charge, and counted in a metric."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.aggregator.conftest import publish_catalog

from aggregator.sample_catalog import SampleCatalog
from meterflow.settings import Settings


async def test_a_charge_that_cannot_be_priced_answers_500_and_is_counted(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    org = f"org-{unique}"
    sample = SampleCatalog(org)
    sample.organization()
    sample.customer("c1")
    sample.metric("calls")
    # A catalog record the API would have refused (`amount` is not a decimal): pricing it
    # raises inside the view.
    sample.plan("p1", ["calls"], unit_amount="not-a-price")
    sample.subscription("s1", customer="c1", plan_code="p1", subscription_at="2020-01-01T00:00:00Z")
    await publish_catalog(settings, sample.records)
    worker = worker_factory()
    worker.start()
    await worker.wait_ready()
    path = f"/current-usage/s1?organization_id={org}"
    for _ in range(200):  # until the catalog record has reached the worker
        status, body = await worker.get(path)
        if status != 404:
            break
        await asyncio.sleep(0.3)
    assert status == 500
    assert body == {
        "status": 500,
        "error": "Internal Server Error",
        "code": "usage_failed",
        "error_details": {},
    }
    assert await worker.metric("meterflow_aggregator_usage_failures_total") >= 1
    log = worker.log_path.read_text()
    assert "aggregator.usage_failed" in log
    assert f"subscription=s1 charge=ch-{org}-p1-calls" in log
