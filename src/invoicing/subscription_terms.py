"""What the catalog says about a subscription being invoiced (its plan, charges, taxes,
coupons, wallets, credit notes), as invoicing reads it and prices with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from billing.charge_models import CHARGE_MODELS
from billing.credit_notes import CreditNoteTerms
from billing.errors import BillingError
from billing.invoice_terms import CustomerCoupon, TaxTerms, WalletTerms
from billing.value import value
from invoicing.errors import PoisonMessage


@dataclass(frozen=True, slots=True)
class PlanTerms:
    plan_id: str
    code: str
    name: str
    invoice_display_name: str | None
    interval: str
    amount_cents: int
    amount_currency: str
    pay_in_advance: bool


@dataclass(frozen=True)
class ChargeTerms:
    charge_id: str
    charge_model: str
    properties: Mapping[str, Any]
    invoiceable: bool
    billable_metric_id: str
    metric_code: str
    metric_name: str
    invoice_display_name: str | None
    # The charge's own taxes: when it has any, they replace the invoice's on its fees.
    taxes: tuple[TaxTerms, ...] = ()

    @cached_property
    def model_terms(self) -> Any:
        """The properties as its charge model reads them (a ladder, a package...), read once
        per charge: a batch's read gives every subscription of a plan the same terms.
        Raises PoisonMessage when the model is unknown or refuses them."""
        model = CHARGE_MODELS.get(self.charge_model)
        if model is None:
            raise PoisonMessage(
                "unknown_charge_model", f"charge {self.charge_id} uses {self.charge_model!r}"
            )
        try:
            return model.parse(self.properties)
        except BillingError as exc:
            raise PoisonMessage("invalid_charge_properties", f"{self.charge_id}: {exc}") from exc


@value
class SubscriptionTerms:
    """What the catalog in Postgres says about the subscription being invoiced."""

    subscription_id: str
    organization_id: str
    customer_id: str
    external_id: str
    billing_time: str
    subscription_at: datetime
    timezone: str | None
    organization_timezone: str | None
    invoice_grace_period_days: int
    plan: PlanTerms
    charges: Mapping[str, ChargeTerms]
    taxes: tuple[TaxTerms, ...] = ()
    coupons: tuple[CustomerCoupon, ...] = ()
    wallets: tuple[WalletTerms, ...] = ()
    credit_notes: tuple[CreditNoteTerms, ...] = ()


# Previously invoiced aggregation states, by (charge_id, usage period start).
InvoicedUsage = Mapping[tuple[str, datetime], Sequence[Mapping[str, Any]]]
