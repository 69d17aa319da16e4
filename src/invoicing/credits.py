"""What an invoice consumes, as its write takes it and its row records it: the coupons (the
invoice's `credits`, a draft's `coupon_uses`), wallets, credit notes and pending late usage."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from billing.invoice import AppliedCoupon, CouponUse
from billing.invoice_terms import CustomerCoupon
from billing.wallet import granted_first
from invoicing.pricing import PricedInvoice
from meterflow.db import new_ids


class ConsumingInvoice(Protocol):
    """An invoice about to be written (`invoicing.write.InvoiceToWrite`)."""

    @property
    def invoice_id(self) -> uuid.UUID: ...

    @property
    def priced(self) -> PricedInvoice: ...

    @property
    def pending_keys(self) -> tuple[str, ...]: ...


def consumed_rows(
    items: Sequence[ConsumingInvoice],
) -> tuple[list[tuple[Any, ...]], ...]:
    """What the batch's invoices consume: coupons, wallets, credit notes, late usage rows."""
    coupons: list[tuple[Any, ...]] = []
    wallets: list[tuple[Any, ...]] = []
    notes: list[tuple[Any, ...]] = []
    late: list[tuple[Any, ...]] = []
    for item in items:
        for coupon, use in item.priced.coupon_uses:
            before, after = coupon.state, use.after
            coupons.append(
                (
                    uuid.UUID(coupon.applied_coupon_id),
                    after.amount_cents_remaining,
                    after.frequency_duration_remaining,
                    after.terminated,
                    before.amount_cents_remaining,
                    before.frequency_duration_remaining,
                )
            )
        for wallet, cents in item.priced.wallet_uses:
            granted, _ = granted_first(cents, wallet.granted_balance_cents)
            wallets.append(
                (
                    uuid.UUID(wallet.wallet_id),
                    item.invoice_id,
                    cents,
                    granted,
                    wallet.balance_cents,
                    wallet.granted_balance_cents,
                )
            )
        for note, cents in item.priced.credit_note_uses:
            notes.append(
                (uuid.UUID(note.credit_note_id), item.invoice_id, cents, note.balance_cents)
            )
        late.extend((key, item.invoice_id) for key in item.pending_keys)
    # Each wallet use's transaction, with an id drawn here (read_model.drafts.CONSUMED).
    wallets = [(*use, id_) for use, id_ in zip(wallets, new_ids(len(wallets)), strict=True)]
    return coupons, wallets, notes, late


def coupon_credits(
    coupon_uses: Sequence[tuple[CustomerCoupon, CouponUse]], currency: str
) -> list[dict[str, Any]]:
    """The invoice's `credits`: what each coupon took, as Lago lists it."""
    return [
        {
            "lago_id": str(uuid.uuid4()),
            "amount_cents": use.amount_cents,
            "amount_currency": currency,
            "before_taxes": True,
            "item": {
                "lago_item_id": coupon.coupon_id,
                "type": "coupon",
                "code": coupon.coupon_code,
                "name": coupon.coupon_name,
            },
        }
        for coupon, use in coupon_uses
    ]


def coupon_left(state: AppliedCoupon) -> dict[str, Any]:
    return {
        "amount_cents_remaining": state.amount_cents_remaining,
        "frequency_duration_remaining": state.frequency_duration_remaining,
    }


def coupon_uses_json(
    coupon_uses: Sequence[tuple[CustomerCoupon, CouponUse]],
) -> list[dict[str, Any]]:
    """A draft's `coupon_uses`: each used coupon's state before the draft and after it."""
    return [
        {
            "applied_coupon_id": coupon.applied_coupon_id,
            "before": coupon_left(coupon.state),
            "after": coupon_left(use.after),
        }
        for coupon, use in coupon_uses
    ]
