"""Charge fees that need more than units: percentage with per-event amounts kept by the
aggregation, package details, and the invoice number prefix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from invoicing.closed_period import parse_period_closed
from invoicing.pricing import price_period
from invoicing.subscription_terms import ChargeTerms, PlanTerms, SubscriptionTerms
from read_model.invoice_rows import document_prefix

SUB, ORG, METRIC = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
CHARGE = str(uuid.uuid4())
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def _terms(
    model: str, properties: dict[str, object], timezone: str | None = None, amount: int = 0
) -> SubscriptionTerms:
    return SubscriptionTerms(
        subscription_id=SUB,
        organization_id=ORG,
        customer_id=str(uuid.uuid4()),
        external_id="sub",
        billing_time="calendar",
        subscription_at=datetime(2026, 1, 1, tzinfo=UTC),
        timezone=timezone,
        organization_timezone=None,
        invoice_grace_period_days=0,
        plan=PlanTerms(str(uuid.uuid4()), "p", "P", None, "monthly", amount, "USD", False),
        charges={CHARGE: ChargeTerms(CHARGE, model, properties, True, METRIC, "tx", "Tx", None)},
    )


def _closed(model: str, units: str, events: int, aggregation: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "period_key": f"{SUB}:2026-03-01T00:00:00Z",
            "organization_id": ORG,
            "subscription_id": SUB,
            "external_subscription_id": "sub",
            "currency": "USD",
            "period_start": START.isoformat(),
            "period_end": END.isoformat(),
            "charges": [
                {
                    "charge_id": CHARGE,
                    "charge_model": model,
                    "billable_metric_id": METRIC,
                    "billable_metric_code": "tx",
                    "aggregation_type": aggregation["type"],
                    "units": units,
                    "events_count": events,
                    "aggregation": aggregation,
                }
            ],
        }
    )


def test_percentage_prices_each_event_from_the_kept_amounts() -> None:
    events = [
        ["2026-03-02T00:00:00+00:00", "t1", "100"],
        ["2026-03-03T00:00:00+00:00", "t2", "50"],
        ["2026-03-04T00:00:00+00:00", "t3", "30"],
    ]
    aggregation = {"type": "sum_agg", "total": "180", "events_count": 3, "events": events}
    properties = {"rate": "2", "fixed_amount": "0.10", "free_units_per_events": 1}
    closed = parse_period_closed(_closed("percentage", "180", 3, aggregation))
    invoice = price_period(closed, _terms("percentage", properties), {})
    fee = invoice.fees[-1]
    # The first event (100) is free: (180 - 100) x 2% = 1.60, plus 2 paid events x 0.10.
    assert fee.amount_cents == 180
    assert fee.amount_details["free_units"] == "100"
    assert fee.amount_details["paid_events"] == "2"
    assert invoice.issuing_date.isoformat() == "2026-04-01"


def test_package_fee_and_its_details() -> None:
    aggregation = {"type": "count_agg", "events_count": 201}
    properties = {"amount": "5", "package_size": 100, "free_units": 100}
    closed = parse_period_closed(_closed("package", "201", 201, aggregation))
    fee = price_period(closed, _terms("package", properties), {}).fees[-1]
    assert fee.amount_cents == 1000
    assert fee.amount_details["paid_units"] == "101"


def test_document_prefix_is_three_letters_and_four_of_the_id() -> None:
    org = "1a901a90-1a90-1a90-1a90-1a901a90ab12"
    assert document_prefix("Acme corp", org) == "ACM-AB12"
    assert document_prefix("--", org) == "INV-AB12"


def test_a_period_closed_on_other_boundaries_pays_the_whole_plan() -> None:
    # Closed on UTC months, while the catalog now says Paris: no pro rata across the shift.
    aggregation = {"type": "count_agg", "events_count": 0}
    closed = parse_period_closed(_closed("standard", "0", 0, aggregation))
    invoice = price_period(closed, _terms("standard", {"amount": "1"}, "Europe/Paris", 999), {})
    assert [f.amount_cents for f in invoice.fees] == [999, 0]
    assert invoice.issuing_date.isoformat() == "2026-04-01"
