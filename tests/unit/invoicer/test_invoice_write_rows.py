"""The invoice write's rows are plain lists read by position: each value sits under the
column its name says (a taxed, discounted invoice paid by a credit note and a wallet, so the
amounts differ from one another)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billing.credit_notes import CreditNoteTerms
from billing.invoice import AppliedCoupon, CouponFrequency, CouponType
from billing.invoice_terms import CustomerCoupon, TaxTerms, WalletTerms
from invoicing import write
from invoicing.closed_period import ChargeUsage, PeriodClosed
from invoicing.pricing import price_period
from invoicing.subscription_terms import ChargeTerms, PlanTerms, SubscriptionTerms
from invoicing.terms import Loaded
from read_model import invoice_rows

CHARGE, METRIC = str(uuid.uuid4()), str(uuid.uuid4())
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def _item() -> write.InvoiceToWrite:
    coupon = AppliedCoupon(
        coupon_type=CouponType.FIXED_AMOUNT,
        frequency=CouponFrequency.ONCE,
        amount_cents=300,
        amount_currency="EUR",
        percentage_rate=None,
        frequency_duration_remaining=None,
        amount_cents_remaining=300,
        code="applied-1",
    )
    terms = SubscriptionTerms(
        subscription_id=str(uuid.uuid4()),
        organization_id=str(uuid.uuid4()),
        customer_id=str(uuid.uuid4()),
        external_id="sub-rows",
        billing_time="calendar",
        subscription_at=datetime(2026, 1, 1, tzinfo=UTC),
        timezone="Europe/Paris",
        organization_timezone=None,
        invoice_grace_period_days=0,
        plan=PlanTerms(str(uuid.uuid4()), "pro", "Pro", "Pro plan", "monthly", 2500, "EUR", False),
        charges={
            CHARGE: ChargeTerms(
                CHARGE, "standard", {"amount": "0.07"}, True, METRIC, "calls", "Calls", "API"
            )
        },
        taxes=(TaxTerms(str(uuid.uuid4()), "vat", "VAT", Decimal("20"), None),),
        coupons=(CustomerCoupon("applied-1", str(uuid.uuid4()), "c", "C", coupon),),
        wallets=(WalletTerms(str(uuid.uuid4()), "EUR", 700, 200),),
        credit_notes=(CreditNoteTerms(str(uuid.uuid4()), "EUR", 450),),
    )
    usage = ChargeUsage(
        charge_id=CHARGE,
        charge_model="standard",
        billable_metric_id=METRIC,
        billable_metric_code="calls",
        aggregation_type="count_agg",
        units=Decimal(1234),
        events_count=1234,
        aggregation={"type": "count_agg", "events_count": 1234},
    )
    closed = PeriodClosed(
        period_key=f"{terms.subscription_id}:2026-03",
        organization_id=terms.organization_id,
        subscription_id=terms.subscription_id,
        external_subscription_id="sub-rows",
        external_customer_id="cust-rows",
        plan_code="pro",
        currency="EUR",
        period_start=START,
        period_end=END,
        terminated=False,
        charges=(usage,),
        adjustments=(),
        closed_at=datetime(2026, 4, 1, 0, 5, tzinfo=UTC),
    )
    loaded = Loaded(terms, False, 7, "Rows Inc", number_prefix="ROW-1234")
    return write.InvoiceToWrite(closed, loaded, price_period(closed, terms, {}))


def _named(columns: tuple[tuple[str, str], ...], row: list[Any]) -> dict[str, Any]:
    assert len(row) == len(columns)
    return {name: value for (name, _), value in zip(columns, row, strict=True)}


def _no_ids(value: Any) -> Any:
    """`value` without its `lago_id`s (drawn at random for each applied tax)."""
    if isinstance(value, dict):
        return {k: _no_ids(v) for k, v in value.items() if k != "lago_id"}
    if isinstance(value, list):
        return [_no_ids(v) for v in value]
    return value


def test_each_invoice_value_is_under_its_column() -> None:
    item = _item()
    priced, terms, t = item.priced, item.loaded.terms, item.priced.totals
    row = _named(write._INVOICE_COLUMNS, write._invoice_row(item))
    amounts = [name for name in row if name.endswith("_amount_cents") and hasattr(t, name)]
    assert len({getattr(t, name) for name in amounts}) == len(amounts) == 8  # all different
    for name in amounts:
        assert row[name] == getattr(t, name), name
    assert (row["id"], row["organization_id"], row["customer_id"], row["subscription_id"]) == (
        item.invoice_id,
        terms.organization_id,
        terms.customer_id,
        terms.subscription_id,
    )
    assert row["period_key"] == priced.period_key
    assert row["prefix"] == "ROW-1234-007-"
    assert (row["status"], row["currency"]) == ("finalized", "EUR")
    assert row["issuing_date"] == priced.issuing_date
    assert (row["period_start"], row["period_end"]) == (START, END)
    assert row["closed_at"] == item.closed.closed_at
    assert row["grace_until"] is None
    assert row["billing_periods"][0]["external_subscription_id"] == "sub-rows"
    assert _no_ids(row["applied_taxes"]) == _no_ids(
        invoice_rows.applied_taxes(priced.fees, t, "EUR")
    )
    assert row["credits"] and row["credits"][0]["amount_cents"] == t.coupons_amount_cents
    assert row["prepaid_granted_credit_amount_cents"] == priced.prepaid_granted_cents == 200
    assert row["coupon_uses"] == []


def test_each_fee_value_is_under_its_column() -> None:
    item = _item()
    ids = ["1" * 32, "2" * 32]
    rows = [_named(write._FEE_COLUMNS, r) for r in write._fee_rows(item, 3, iter(ids))]
    assert len(rows) == len(item.priced.fees) == 2
    assert [row["id"] for row in rows] == ids
    for position, (row, fee, taxes) in enumerate(
        zip(rows, item.priced.fees, item.priced.totals.fee_taxes, strict=True)
    ):
        assert (row["invoice"], row["position"]) == (3, position)
        assert row["fee_type"] == fee.kind.value
        for name in (*write.FEE_ATTRIBUTES, "charge_id", "billable_metric_id", "aggregation"):
            assert row[name] == getattr(fee, name), name
        assert row["amount_details"] == fee.amount_details
        assert row["precise_coupons_amount_cents"] == taxes.precise_coupons_cents
        assert row["taxes_amount_cents"] == taxes.taxes_cents
        assert row["taxes_precise_amount_cents"] == taxes.taxes_precise_cents
        assert row["taxes_rate"] == taxes.taxes_rate == Decimal("20")
        shared = fee.amount_cents - taxes.precise_coupons_cents
        assert _no_ids(row["applied_taxes"]) == _no_ids(invoice_rows.fee_taxes(fee, shared))
    charge = rows[1]
    assert (charge["item_code"], charge["item_name"], charge["invoice_display_name"]) == (
        "calls",
        "Calls",
        "API",
    )
    assert charge["units"] == Decimal(1234) and charge["events_count"] == 1234
    assert charge["usage_period_start"] == START and charge["charge_id"] == CHARGE
