"""Pricing closed periods into invoices, checked against hand computations to the cent."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from billing.invoice import AppliedCoupon, CouponFrequency, CouponType
from billing.invoice_terms import CustomerCoupon, TaxTerms
from invoicing.closed_period import LateUsage, PeriodClosed, parse_message, parse_period_closed
from invoicing.errors import PoisonMessage
from invoicing.pricing import price_period, refresh_draft
from invoicing.subscription_terms import ChargeTerms, PlanTerms, SubscriptionTerms

SUB = str(uuid.uuid4())
ORG = str(uuid.uuid4())
STANDARD = str(uuid.uuid4())
GRADUATED = str(uuid.uuid4())
METRIC = str(uuid.uuid4())
GRADUATED_RANGES = [
    {"from_value": 0, "to_value": 100, "per_unit_amount": "0.10", "flat_amount": "1"},
    {"from_value": 101, "to_value": None, "per_unit_amount": "0.05", "flat_amount": "0"},
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


JAN_15 = datetime(2026, 1, 15, 10, tzinfo=UTC)


def terms(
    *,
    pay_in_advance: bool = False,
    billing_time: str = "calendar",
    subscription_at: datetime = JAN_15,
    timezone: str | None = None,
    grace: int = 0,
    amount_cents: int = 1000,
) -> SubscriptionTerms:
    return SubscriptionTerms(
        subscription_id=SUB,
        organization_id=ORG,
        customer_id=str(uuid.uuid4()),
        external_id="sub-1",
        billing_time=billing_time,
        subscription_at=subscription_at,
        timezone=timezone,
        organization_timezone=None,
        invoice_grace_period_days=grace,
        plan=PlanTerms(
            plan_id=str(uuid.uuid4()),
            code="startup",
            name="Startup",
            invoice_display_name=None,
            interval="monthly",
            amount_cents=amount_cents,
            amount_currency="EUR",
            pay_in_advance=pay_in_advance,
        ),
        charges={
            STANDARD: ChargeTerms(
                STANDARD, "standard", {"amount": "0.05"}, True, METRIC, "api_calls", "API", None
            ),
            GRADUATED: ChargeTerms(
                GRADUATED,
                "graduated",
                {"graduated_ranges": GRADUATED_RANGES},
                True,
                METRIC,
                "storage",
                "Storage",
                None,
            ),
        },
    )


def charge(charge_id: str, model: str, units: int) -> dict[str, Any]:
    return {
        "charge_id": charge_id,
        "charge_model": model,
        "billable_metric_id": METRIC,
        "billable_metric_code": "api_calls",
        "aggregation_type": "count_agg",
        "units": str(units),
        "events_count": units,
        "aggregation": {"type": "count_agg", "events_count": units},
    }


def closed(
    start: datetime,
    end: datetime,
    charges: list[dict[str, Any]],
    *,
    terminated: bool = False,
    adjustments: list[dict[str, Any]] | None = None,
) -> PeriodClosed:
    return parse_period_closed(
        orjson.dumps(
            {
                "period_key": f"{SUB}:{start.isoformat()}",
                "organization_id": ORG,
                "subscription_id": SUB,
                "external_subscription_id": "sub-1",
                "external_customer_id": "cust-1",
                "plan_code": "startup",
                "currency": "EUR",
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "terminated": terminated,
                "charges": charges,
                "adjustments": adjustments or [],
                "closed_at": end.isoformat(),
            }
        )
    )


def test_first_calendar_period_in_arrears_is_pro_rated_and_charges_priced() -> None:
    message = closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [charge(STANDARD, "standard", 1234), charge(GRADUATED, "graduated", 250)],
    )
    invoice = price_period(message, terms(), {}, now=utc(2026, 2, 1, 0, 5))
    # 15..31 January is 17 of 31 days: 1000 x 17 / 31 = 548.39 -> 548.
    # 1234 x 0.05 = 61.70; graduated: 100 x 0.10 + 1 flat + 150 x 0.05 = 18.50.
    assert [f.amount_cents for f in invoice.fees] == [548, 6170, 1850]
    assert invoice.totals.fees_amount_cents == 8568
    assert invoice.totals.total_amount_cents == 8568
    assert invoice.totals.taxes_amount_cents == 0
    assert invoice.status == "finalized"
    assert invoice.issuing_date == date(2026, 2, 1)
    assert invoice.fees[2].amount_details["graduated_ranges"][1]["units"] == "150"
    assert invoice.invoicing_reason == "subscription_periodic"


def test_full_period_pays_the_whole_plan() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [charge(STANDARD, "standard", 0)])
    invoice = price_period(message, terms(), {}, now=utc(2026, 3, 2))
    assert [f.amount_cents for f in invoice.fees] == [1000, 0]


def test_in_advance_first_close_bills_first_and_next_period() -> None:
    start = utc(2026, 1, 15, 10)
    message = closed(start, utc(2026, 2, 15), [])
    invoice = price_period(
        message,
        terms(pay_in_advance=True, billing_time="anniversary", subscription_at=start),
        {},
        now=utc(2026, 2, 16),
    )
    subscription_fees = [(f.amount_cents, f.from_date, f.to_date) for f in invoice.fees]
    assert subscription_fees == [
        (1000, start, utc(2026, 2, 15)),
        (1000, utc(2026, 2, 15), utc(2026, 3, 15)),
    ]
    assert invoice.invoicing_reason == "subscription_starting"
    assert invoice.totals.total_amount_cents == 2000


def test_in_advance_terminated_period_bills_no_next_period() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 2, 10, 12), [], terminated=True)
    invoice = price_period(message, terms(pay_in_advance=True), {}, now=utc(2026, 2, 11))
    assert invoice.fees == ()
    assert invoice.invoicing_reason == "subscription_terminating"


def test_terminated_in_arrears_is_pro_rated_by_local_days() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 2, 10, 12), [], terminated=True)
    invoice = price_period(message, terms(amount_cents=2800), {}, now=utc(2026, 2, 11))
    # 1..10 February: 10 of 28 days of 28.00.
    assert [f.amount_cents for f in invoice.fees] == [1000]


def test_late_events_are_priced_on_top_of_what_was_invoiced() -> None:
    late = charge(GRADUATED, "graduated", 10)
    message = closed(
        utc(2026, 2, 1),
        utc(2026, 3, 1),
        [],
        adjustments=[
            {
                "period_start": utc(2026, 1, 15, 10).isoformat(),
                "period_end": utc(2026, 2, 1).isoformat(),
                "charges": [late],
            }
        ],
    )
    invoiced = {(GRADUATED, utc(2026, 1, 15, 10)): [{"type": "count_agg", "events_count": 250}]}
    invoice = price_period(message, terms(), invoiced, now=utc(2026, 3, 2))
    adjustment = invoice.fees[-1]
    # 260 units price 19.00, 250 priced 18.50: the late 10 units add 0.50.
    assert adjustment.is_adjustment
    assert adjustment.amount_cents == 50
    assert adjustment.units == Decimal(10)
    assert adjustment.usage_period_start == utc(2026, 1, 15, 10)
    assert invoice.totals.total_amount_cents == 1000 + 50


def test_late_events_without_a_prior_invoice_are_priced_alone() -> None:
    late = charge(GRADUATED, "graduated", 10)
    message = closed(
        utc(2026, 2, 1),
        utc(2026, 3, 1),
        [],
        adjustments=[
            {
                "period_start": utc(2026, 1, 15, 10).isoformat(),
                "period_end": utc(2026, 2, 1).isoformat(),
                "charges": [late],
            }
        ],
    )
    invoice = price_period(message, terms(), {}, now=utc(2026, 3, 2))
    assert invoice.fees[-1].amount_cents == 200  # 10 x 0.10 + 1 flat


def test_grace_period_makes_a_draft_until_it_ends() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [])
    draft = price_period(message, terms(grace=3), {}, now=utc(2026, 3, 2))
    assert draft.status == "draft"
    assert draft.grace_until == utc(2026, 3, 4)
    late = price_period(message, terms(grace=3), {}, now=utc(2026, 3, 5))
    assert late.status == "finalized"


def test_issuing_date_is_the_customers_local_date() -> None:
    # Kolkata's 1 March starts at 28 February 18:30 UTC.
    message = closed(utc(2026, 1, 31, 18, 30), utc(2026, 2, 28, 18, 30), [])
    invoice = price_period(
        message,
        terms(timezone="Asia/Kolkata", subscription_at=utc(2025, 12, 31, 18, 30)),
        {},
        now=utc(2026, 3, 2),
    )
    assert invoice.issuing_date == date(2026, 3, 1)
    assert [f.amount_cents for f in invoice.fees] == [1000]


def test_a_charge_missing_from_the_catalog_is_poison() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [charge(str(uuid.uuid4()), "standard", 1)])
    with pytest.raises(PoisonMessage) as caught:
        price_period(message, terms(), {}, now=utc(2026, 3, 2))
    assert caught.value.reason == "charge_not_found"


def test_invalid_charge_properties_are_poison() -> None:
    bad = terms()
    broken = {
        **bad.charges,
        STANDARD: ChargeTerms(STANDARD, "standard", {}, True, METRIC, "a", "A", None),
    }
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [charge(STANDARD, "standard", 1)])
    with pytest.raises(PoisonMessage) as caught:
        price_period(
            message,
            SubscriptionTerms(**{**{s: getattr(bad, s) for s in bad.__slots__}, "charges": broken}),
            {},
        )
    assert caught.value.reason == "invalid_charge_properties"


def test_non_invoiceable_charges_make_no_fee() -> None:
    base = terms()
    hidden = {
        STANDARD: ChargeTerms(STANDARD, "standard", {"amount": "1"}, False, METRIC, "a", "A", None)
    }
    fields = {s: getattr(base, s) for s in base.__slots__}
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [charge(STANDARD, "standard", 5)])
    invoice = price_period(message, SubscriptionTerms(**{**fields, "charges": hidden}), {})
    assert [f.kind.value for f in invoice.fees] == ["subscription"]


def test_a_draft_refreshed_by_late_usage_reprices_its_charge_fees_coupons_and_taxes() -> None:
    vat = TaxTerms("t-vat", "vat", "VAT", Decimal("20"), None)
    ten_percent = CustomerCoupon(
        "ac-1",
        "c-1",
        "ten",
        "Ten",
        AppliedCoupon(
            CouponType.PERCENTAGE,
            CouponFrequency.FOREVER,
            percentage_rate=Decimal("10"),
            code="ac-1",
        ),
    )
    graced = replace(terms(grace=3), taxes=(vat,), coupons=(ten_percent,))
    message = closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [charge(STANDARD, "standard", 1234), charge(GRADUATED, "graduated", 250)],
    )
    draft = price_period(message, graced, {}, now=utc(2026, 2, 2))
    assert draft.status == "draft"
    # 548 + 6170 + 1850 = 8568; 10 % off = 856.8 -> 857; VAT 20 % of 7711 = 1542.2 -> 1542.
    assert draft.totals.total_amount_cents == 9253
    late = parse_message(
        orjson.dumps(
            {
                "type": "late_usage",
                "late_key": f"{message.period_key}:late:9",
                "period_key": message.period_key,
                "organization_id": ORG,
                "subscription_id": SUB,
                "external_subscription_id": "sub-1",
                "currency": "EUR",
                "period_start": message.period_start.isoformat(),
                "period_end": message.period_end.isoformat(),
                "charges": [charge(STANDARD, "standard", 6), charge(GRADUATED, "graduated", 10)],
            }
        )
    )
    assert isinstance(late, LateUsage)
    refreshed = refresh_draft(graced, "EUR", draft.fees, late, graced.coupons)
    # Standard 1240 x 0.05 = 62.00; graduated 260 units: 100 x 0.10 + 1.00 + 160 x 0.05 =
    # 19.00. Fees 548 + 6200 + 1900 = 8648; 10 % off = 864.8 -> 865; VAT 20 % of 7783 =
    # 1556.6 -> 1557; total 7783 + 1557 = 9340.
    assert [f.amount_cents for f in refreshed.fees] == [548, 6200, 1900]
    assert refreshed.changed == (1, 2)
    assert refreshed.fees[2].units == Decimal(260)
    assert refreshed.fees[2].aggregation == {"type": "count_agg", "events_count": 260}
    assert refreshed.fees[2].taxes == (vat,)
    t = refreshed.totals
    assert (t.fees_amount_cents, t.coupons_amount_cents, t.taxes_amount_cents) == (8648, 865, 1557)
    assert t.total_amount_cents == 9340
    assert [u.amount_cents for _, u in refreshed.coupon_uses] == [865]


def test_late_usage_without_events_changes_no_fee() -> None:
    message = closed(utc(2026, 2, 1), utc(2026, 3, 1), [charge(STANDARD, "standard", 5)])
    draft = price_period(message, terms(grace=3), {}, now=utc(2026, 3, 2))
    late = LateUsage(
        "k",
        message.period_key,
        ORG,
        SUB,
        "sub-1",
        "EUR",
        message.period_start,
        message.period_end,
        message.charges[:0],
    )
    refreshed = refresh_draft(terms(grace=3), "EUR", draft.fees, late, ())
    assert refreshed.fees == draft.fees and refreshed.changed == ()
