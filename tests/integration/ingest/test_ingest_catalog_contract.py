"""The catalog records ingest publishes are what the aggregator's catalog view needs: from
them alone it rebuilds a subscription's terms (plan, charges, metrics, timezone), and a
subscription's record names it in its headers, so that a worker not owning its partition
skips it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lago_python_client.models import BillableMetric, Charge, Charges, Customer, Plan, Subscription

from aggregator.catalog_view import CatalogView
from meterflow.catalog import subscription_of
from meterflow.event_records import partition_for

Call = Callable[..., Any]


async def test_aggregator_rebuilds_subscription_terms_from_ingest_records(
    tenant: Any, call: Call, read_catalog: Call
) -> None:
    lago = tenant.client
    await call(lago.customers.create, Customer(external_id="c-1", timezone="Pacific/Chatham"))
    metric = await call(
        lago.billable_metrics.create,
        BillableMetric(name="GB", code="gb", aggregation_type="max_agg", field_name="gb"),
    )
    plan = await call(
        lago.plans.create,
        Plan(
            name="P",
            code="p",
            interval="quarterly",
            amount_cents=100,
            amount_currency="JPY",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": "3"},
                    )
                ]
            ),
        ),
    )
    await call(
        lago.subscriptions.create,
        Subscription(
            external_customer_id="c-1",
            plan_code="p",
            external_id="s-1",
            billing_time="anniversary",
            subscription_at="2026-02-28T11:00:00Z",
        ),
    )
    records = await read_catalog(5, headers=True)
    named = [subscription_of(headers) for _, headers in records]
    assert named == [None] * 4 + [(tenant.organization_id, "s-1")]
    home = partition_for(b"s-1", 4)
    views = {}
    for kept in ({home}, set(range(4)) - {home}):
        view = views[home in kept] = CatalogView(4)
        view.kept = frozenset(kept)
        for record, headers in records:
            view.take(record.encode(), headers)
    assert views[False].terms(tenant.organization_id, "s-1") is None
    assert len(views[False]) == 0
    view = views[True]
    terms = view.terms(tenant.organization_id, "s-1")
    assert terms is not None, "every object the subscription needs arrived"
    assert (terms.interval, terms.billing_time, terms.currency) == (
        "quarterly",
        "anniversary",
        "JPY",
    )
    assert terms.timezone == "Pacific/Chatham" and terms.organization_timezone == "UTC"
    assert terms.subscription_at.isoformat() == "2026-02-28T11:00:00+00:00"
    [charge] = terms.charges
    assert charge.charge_id == plan.charges.__root__[0].lago_id
    assert (charge.metric_code, charge.aggregation_type, charge.field_name) == (
        "gb",
        "max_agg",
        "gb",
    )
