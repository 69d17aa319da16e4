"""Contract with the aggregator: what its closing code writes for a period's charges parses
and prices here (field names, decimal strings, aggregation snapshots, period_key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from aggregator.billing_domain import BillingDomain
from aggregator.catalog_view import ChargeTerms as AggregatorCharge
from aggregator.catalog_view import PlanTerms as AggregatorPlan
from aggregator.catalog_view import SubscriptionTerms as AggregatorTerms
from aggregator.closing import charge_totals, period_key
from invoicing.closed_period import parse_period_closed
from invoicing.pricing import price_period
from invoicing.subscription_terms import ChargeTerms, PlanTerms, SubscriptionTerms

ORG, SUB, CHARGE, METRIC = (str(uuid.uuid4()) for _ in range(4))
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)


def test_the_aggregators_closed_period_prices_here() -> None:
    properties = {"amount": "0.25"}
    aggregator_terms = AggregatorTerms(
        organization_id=ORG,
        subscription_id=SUB,
        external_subscription_id="sub-1",
        external_customer_id="cust-1",
        plan_code="p",
        billing_time="calendar",
        subscription_at=START,
        terminated_at=None,
        timezone=None,
        organization_timezone=None,
        plan=AggregatorPlan(
            interval="monthly",
            currency="EUR",
            charges=(
                AggregatorCharge(
                    charge_id=CHARGE,
                    charge_model="standard",
                    properties=properties,
                    charge={},
                    metric_id=METRIC,
                    metric_code="gb",
                    aggregation_type="sum_agg",
                    field_name="gb",
                    metric={},
                ),
            ),
        ),
    )
    domain = BillingDomain()
    state = domain.new_state(aggregator_terms.charges[0], START, END, None)
    for i, gb in enumerate(("1.5", "2.25", "0.25")):
        event = domain.parse_event(
            ORG,
            {
                "transaction_id": f"t{i}",
                "external_subscription_id": "sub-1",
                "code": "gb",
                "timestamp": START.timestamp() + 3600 * (i + 1),
                "properties": {"gb": gb},
            },
            received_at=END,
        )
        value = domain.value_of(aggregator_terms.charges[0], event)
        domain.add_many(state, [(value, event.timestamp, event.transaction_id)])
    charges = charge_totals(domain, aggregator_terms, START, END, {CHARGE: state.to_dict()})
    message = {
        "period_key": period_key(SUB, START),
        "organization_id": ORG,
        "subscription_id": SUB,
        "external_subscription_id": "sub-1",
        "external_customer_id": "cust-1",
        "plan_code": "p",
        "currency": "EUR",
        "period_start": START.isoformat(),
        "period_end": END.isoformat(),
        "terminated": False,
        "charges": charges,
        "adjustments": [],
        "closed_at": END.isoformat(),
    }
    closed = parse_period_closed(orjson.dumps(message))
    assert closed.charges[0].units == 4
    assert closed.charges[0].events_count == 3
    terms = SubscriptionTerms(
        subscription_id=SUB,
        organization_id=ORG,
        customer_id=str(uuid.uuid4()),
        external_id="sub-1",
        billing_time="calendar",
        subscription_at=START,
        timezone=None,
        organization_timezone=None,
        invoice_grace_period_days=0,
        plan=PlanTerms(str(uuid.uuid4()), "p", "P", None, "monthly", 500, "EUR", False),
        charges={
            CHARGE: ChargeTerms(CHARGE, "standard", properties, True, METRIC, "gb", "GB", None)
        },
    )
    invoice = price_period(closed, terms, {})
    # 5.00 plan + 4 GB x 0.25.
    assert [f.amount_cents for f in invoice.fees] == [500, 100]
    assert invoice.period_key == f"{SUB}:2026-01-01T00:00:00Z"
