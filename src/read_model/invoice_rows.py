"""The parts of an invoice row that every writer of invoices fills the same way (the
invoicer, the API's one-off invoices): the number prefix, the applied taxes, a fee's taxes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from billing.invoice import InvoiceTotals
from billing.invoice_terms import PricedFee
from billing.money import round_cents


def document_prefix(organization_name: str, organization_id: str) -> str:
    """Lago's default invoice number prefix: three letters of the name, four of the id."""
    letters = "".join(ch for ch in organization_name.upper() if ch.isalnum())[:3] or "INV"
    return f"{letters}-{organization_id.replace('-', '')[-4:].upper()}"


def applied_taxes(
    fees: Sequence[PricedFee], totals: InvoiceTotals, currency: str
) -> list[dict[str, Any]]:
    """The invoice's `applied_taxes`: each tax with its rate, base and amount."""
    if not totals.applied_taxes:
        return []
    tax_of = {tax.code: tax for fee in fees for tax in fee.taxes}
    return [
        {
            "lago_id": str(uuid.uuid4()),
            "lago_tax_id": tax_of[a.code].tax_id,
            "tax_name": tax_of[a.code].name,
            "tax_code": a.code,
            "tax_rate": str(a.rate),
            "tax_description": tax_of[a.code].description,
            "amount_cents": a.amount_cents,
            "amount_currency": currency,
            "taxable_base_amount_cents": str(a.taxable_base_cents),
        }
        for a in totals.applied_taxes
    ]


def fee_taxes(fee: PricedFee, base: Decimal) -> dict[str, Any]:
    """The fee's amount of each of its taxes, rounded half up ({code: {...}})."""
    return {
        tax.code: {
            "lago_id": str(uuid.uuid4()),
            "amount_cents": round_cents(base * tax.rate / 100),
        }
        for tax in fee.taxes
    }
