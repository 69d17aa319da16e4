"""What an invoice is priced from and into, shared by the invoicer and the API's one-off
invoices: the taxes, coupons and wallets of a customer as read, the priced fees, and Lago's
totals over them (`invoice_totals`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.invoice import (
    AppliedCoupon,
    CouponType,
    CouponUse,
    Fee,
    FeeKind,
    InvoiceTotals,
    compute_invoice,
)
from billing.value import value


@dataclass(frozen=True, slots=True)
class TaxTerms:
    tax_id: str
    code: str
    name: str
    rate: Decimal
    description: str | None


@value
class CustomerCoupon:
    """An applied coupon of the customer as read before pricing; `state.code` is the
    applied coupon's id, so that each use maps back to its row."""

    applied_coupon_id: str
    coupon_id: str
    coupon_code: str
    coupon_name: str
    state: AppliedCoupon


@value
class WalletTerms:
    """An active wallet of the customer, its balance as read before pricing."""

    wallet_id: str
    currency: str
    balance_cents: int
    granted_balance_cents: int = 0


@value
class PricedFee:
    kind: FeeKind
    item_code: str
    item_name: str
    invoice_display_name: str | None
    amount_cents: int
    precise_amount: Decimal
    units: Decimal
    events_count: int | None
    from_date: datetime
    to_date: datetime
    pay_in_advance: bool = False
    invoiceable: bool = True
    charge_id: str | None = None
    billable_metric_id: str | None = None
    usage_period_start: datetime | None = None
    is_adjustment: bool = False
    aggregation: Mapping[str, Any] | None = None
    amount_details: Mapping[str, Any] = field(default_factory=dict)
    taxes: tuple[TaxTerms, ...] = ()


def invoice_totals(
    currency: str,
    fees: Sequence[PricedFee],
    coupons: Sequence[CustomerCoupon],
    wallets: Sequence[WalletTerms] = (),
    *,
    credit_notes_cents: int = 0,
) -> tuple[InvoiceTotals, tuple[tuple[CustomerCoupon, CouponUse], ...]]:
    """Lago's invoice arithmetic over the fees: the coupons that fit the currency (oldest
    first), the taxes, the credit notes' and the wallets' balances; with each coupon used
    and what it took. Raises BillingError on input Lago's arithmetic refuses."""
    fitting = [c for c in coupons if _coupon_fits(c.state, currency)]
    totals = compute_invoice(
        currency,
        [_fee(f) if f.taxes else Fee(f.kind, f.amount_cents, (), f.item_code) for f in fees],
        coupons=[c.state for c in fitting],
        credit_notes_available_cents=credit_notes_cents,
        wallet_balance_cents=sum(w.balance_cents for w in wallets),
    )
    by_id = {c.applied_coupon_id: c for c in fitting}
    return totals, tuple((by_id[use.code], use) for use in totals.coupon_uses)


def _fee(f: PricedFee) -> Fee:
    """The invoice line of a taxed fee, with its taxes' rates and codes."""
    return Fee(
        f.kind,
        f.amount_cents,
        tuple(t.rate for t in f.taxes),
        f.item_code,
        tuple(t.code for t in f.taxes),
    )


def _coupon_fits(coupon: AppliedCoupon, currency: str) -> bool:
    """A fixed amount only discounts an invoice in its own currency."""
    return coupon.coupon_type is not CouponType.FIXED_AMOUNT or coupon.amount_currency in (
        None,
        currency,
    )
