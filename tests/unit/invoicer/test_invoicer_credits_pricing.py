"""Pricing with taxes, coupons and wallets (pure): which apply, in which order, and what
each use records for the write that follows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from billing.invoice import AppliedCoupon, CouponFrequency, CouponType
from billing.invoice_terms import CustomerCoupon, TaxTerms, WalletTerms
from invoicing.closed_period import PeriodClosed, parse_period_closed
from invoicing.errors import PoisonMessage
from invoicing.pricing import price_period
from invoicing.subscription_terms import PlanTerms, SubscriptionTerms

SUB, ORG = str(uuid.uuid4()), str(uuid.uuid4())
FEB, MAR = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
AFTER = datetime(2026, 3, 2, tzinfo=UTC)


def terms(**changes: object) -> SubscriptionTerms:
    base = SubscriptionTerms(
        subscription_id=SUB,
        organization_id=ORG,
        customer_id=str(uuid.uuid4()),
        external_id="sub-1",
        billing_time="calendar",
        subscription_at=datetime(2026, 1, 1, tzinfo=UTC),
        timezone=None,
        organization_timezone=None,
        invoice_grace_period_days=0,
        plan=PlanTerms(str(uuid.uuid4()), "p", "P", None, "monthly", 10000, "EUR", False),
        charges={},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def february() -> PeriodClosed:
    return parse_period_closed(
        orjson.dumps(
            {
                "period_key": f"{SUB}:feb",
                "organization_id": ORG,
                "subscription_id": SUB,
                "external_subscription_id": "sub-1",
                "currency": "EUR",
                "period_start": FEB.isoformat(),
                "period_end": MAR.isoformat(),
                "charges": [],
            }
        )
    )


def coupon(ident: str, state: AppliedCoupon) -> CustomerCoupon:
    return CustomerCoupon(
        ident, f"coupon-{ident}", ident, ident.title(), replace(state, code=ident)
    )


FIXED_USD = AppliedCoupon(
    CouponType.FIXED_AMOUNT, CouponFrequency.ONCE, amount_cents=9000, amount_currency="USD"
)
FIXED_EUR = AppliedCoupon(
    CouponType.FIXED_AMOUNT, CouponFrequency.ONCE, amount_cents=2000, amount_currency="EUR"
)
TEN_PERCENT = AppliedCoupon(
    CouponType.PERCENTAGE, CouponFrequency.FOREVER, percentage_rate=Decimal(10)
)
VAT = TaxTerms("t1", "vat", "VAT", Decimal("20"), None)


def test_coupons_in_order_then_taxes_then_wallets() -> None:
    invoice = price_period(
        february(),
        terms(
            taxes=(VAT,),
            coupons=(coupon("usd", FIXED_USD), coupon("eur", FIXED_EUR),
                     coupon("pct", TEN_PERCENT)),
            wallets=(WalletTerms("w1", "EUR", 1000), WalletTerms("w2", "USD", 99999),
                     WalletTerms("w3", "EUR", 50000)),
        ),
        {},
        now=AFTER,
    )  # fmt: skip
    t = invoice.totals
    # 10000; the USD coupon waits for a USD invoice; EUR 2000 off, then 10 % of 8000 = 800.
    # 7200 taxed at 20 % = 1440 -> 8640 due; w1 pays its 1000, w3 the other 7640.
    assert (t.coupons_amount_cents, t.taxes_amount_cents) == (2800, 1440)
    assert (t.sub_total_including_taxes_amount_cents, t.prepaid_credit_amount_cents) == (8640, 8640)
    assert t.total_amount_cents == 0
    assert [(c.applied_coupon_id, u.amount_cents) for c, u in invoice.coupon_uses] == [
        ("eur", 2000),
        ("pct", 800),
    ]
    assert invoice.coupon_uses[0][1].after.terminated
    assert [(w.wallet_id, cents) for w, cents in invoice.wallet_uses] == [
        ("w1", 1000),
        ("w3", 7640),
    ]


def test_a_draft_uses_coupons_but_not_wallets() -> None:
    invoice = price_period(
        february(),
        terms(
            invoice_grace_period_days=3,
            coupons=(coupon("eur", FIXED_EUR),),
            wallets=(WalletTerms("w1", "EUR", 1000),),
        ),
        {},
        now=MAR,
    )
    assert invoice.status == "draft"
    assert invoice.totals.coupons_amount_cents == 2000
    assert (invoice.totals.prepaid_credit_amount_cents, invoice.wallet_uses) == (0, ())
    assert invoice.totals.total_amount_cents == 8000


def test_an_impossible_coupon_is_a_poison_message() -> None:
    broken = AppliedCoupon(CouponType.PERCENTAGE, CouponFrequency.ONCE, percentage_rate=None)
    with pytest.raises(PoisonMessage) as caught:
        price_period(february(), terms(coupons=(coupon("x", broken),)), {}, now=AFTER)
    assert caught.value.reason == "invalid_invoice_input"
