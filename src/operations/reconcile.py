"""`meterflow reconcile`: each closed period's invoice recomputed from the events topic and
the catalog (usage with the same aggregation, fees with the same charge models and
subscription-fee rule as the invoicer, all from `billing`), diffed to the cent against the
invoice and fee rows in Postgres. Coupons, taxes, credit notes and prepaid credits are taken
as stored: totals are recomputed from the recomputed fees and those. The catalog keeps no
history, so an invoice issued before its plan last changed has its fees' amounts taken as
stored (their units and events are still checked), and a fee whose metric changed since
is taken as stored whole; each says so in the invoice's unchecked lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.charge_models import price_state
from billing.invoice import plan_fee_cents
from billing.periods import BillingPeriod, resolve_timezone
from meterflow.db import connect
from meterflow.settings import Settings
from operations.events_replay import replay_events
from operations.terms import (
    ChargeTerms,
    Filters,
    StoredFee,
    StoredInvoice,
    Terms,
    load_invoices,
    load_terms,
)
from operations.usage import ScratchUsage, new_state


@dataclass(frozen=True, slots=True)
class Difference:
    """One field of one invoice (or one of its fees) that the recomputation disagrees with."""

    invoice: str
    external_subscription_id: str
    line: str  # "invoice" or the fee's item code
    field: str
    stored: str
    recomputed: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Reconciled:
    invoice: StoredInvoice
    external_subscription_id: str
    recomputed_total_cents: int
    differences: list[Difference]
    unchecked: list[str]  # fee lines that could not be recomputed, and why


def _charge_fee(
    terms: Terms, charge: ChargeTerms, fee: StoredFee, scratch: ScratchUsage, currency: str
) -> dict[str, object]:
    start = fee.usage_period_start or fee.from_date
    found = scratch.usage.get((terms.subscription_id, charge.charge_id, start))
    state = found.state if found else new_state(charge, BillingPeriod(start, fee.to_date))
    priced = price_state(charge.charge_model, charge.properties, state)
    return {
        "units": state.result(),
        "events_count": state.events_count,
        "amount_cents": priced.amount_cents(currency),
    }


def _subscription_fee(terms: Terms, fee: StoredFee) -> dict[str, object]:
    tz = resolve_timezone(terms.customer_timezone, terms.organization_timezone)
    period = BillingPeriod(fee.from_date, fee.to_date)
    cents = plan_fee_cents(
        terms.plan_amount_cents,
        period,
        terms.subscription_at,
        terms.interval,
        terms.billing_time,
        tz,
    )
    if cents is None:
        raise ValueError(f"{period} does not lie within its full plan period")
    return {"amount_cents": cents}


def reconcile_invoice(invoice: StoredInvoice, terms: Terms, scratch: ScratchUsage) -> Reconciled:
    differences: list[Difference] = []
    unchecked: list[str] = []

    def differ(line: str, field: str, stored: object, recomputed: object) -> None:
        same = (
            Decimal(str(stored)) == Decimal(str(recomputed))
            if stored is not None and recomputed is not None
            else stored == recomputed
        )
        if not same:
            differences.append(
                Difference(
                    invoice.number, terms.external_id, line, field, str(stored), str(recomputed)
                )
            )

    issued = invoice.created_at
    repriced = terms.plan_updated_at > issued
    fees_cents = 0
    for fee in invoice.fees:
        recomputed: dict[str, object] | None = None
        charge = next((c for c in terms.charges if c.charge_id == fee.charge_id), None)
        if fee.is_adjustment:
            unchecked.append(f"{fee.item_code}: a late-usage adjustment, taken as stored")
        elif fee.fee_type == "charge" and charge is None:
            unchecked.append(f"{fee.item_code}: its charge is no longer in the plan")
        elif charge is not None and charge.metric_updated_at > issued:
            unchecked.append(
                f"{fee.item_code}: taken as stored, its metric changed at "
                f"{charge.metric_updated_at.isoformat()}, after the invoice was issued"
            )
        elif charge is not None:
            recomputed = _charge_fee(terms, charge, fee, scratch, invoice.currency)
        elif fee.fee_type == "subscription" and not repriced:
            recomputed = _subscription_fee(terms, fee)
        elif fee.fee_type != "subscription":
            unchecked.append(f"{fee.item_code}: {fee.fee_type} fees are taken as stored")
        plan_fee = fee.fee_type == "subscription" and not fee.is_adjustment
        if repriced and (recomputed is not None or plan_fee):
            # Units and events still follow from the events; the price in force then is gone.
            if recomputed is not None:
                recomputed["amount_cents"] = fee.amount_cents
            unchecked.append(
                f"{fee.item_code}: amount taken as stored, the plan changed at "
                f"{terms.plan_updated_at.isoformat()}, after the invoice was issued"
            )
        if recomputed is None:
            fees_cents += fee.amount_cents
            continue
        stored = {
            "units": fee.units,
            "events_count": fee.events_count,
            "amount_cents": fee.amount_cents,
        }
        for field, value in recomputed.items():
            differ(fee.item_code, field, stored[field], value)
        amount = recomputed["amount_cents"]
        assert isinstance(amount, int)
        fees_cents += amount
    i = invoice
    excluding = fees_cents - i.coupons_amount_cents
    including = excluding + i.taxes_amount_cents
    total = including - i.credit_notes_amount_cents - i.prepaid_credit_amount_cents
    for field, stored_value, value in (
        ("fees_amount_cents", i.fees_amount_cents, fees_cents),
        (
            "sub_total_excluding_taxes_amount_cents",
            i.sub_total_excluding_taxes_amount_cents,
            excluding,
        ),
        (
            "sub_total_including_taxes_amount_cents",
            i.sub_total_including_taxes_amount_cents,
            including,
        ),
        ("total_amount_cents", i.total_amount_cents, total),
    ):
        differ("invoice", field, stored_value, value)
    return Reconciled(invoice, terms.external_id, total, differences, unchecked)


async def reconcile(
    settings: Settings,
    filters: Filters,
    since: datetime | None,
    until: datetime | None,
    invoice_id: str | None,
    *,
    progress: bool = True,
) -> list[Reconciled]:
    """Every subscription invoice of the selected subscriptions whose period ended in
    [since, until) (or the one invoice named), recomputed."""
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        terms = await load_terms(conn, filters)
        invoices = await load_invoices(conn, [t.subscription_id for t in terms], invoice_id)
    finally:
        await conn.close()
    invoices = [
        i
        for i in invoices
        if (since is None or i.period_end >= since) and (until is None or i.period_end < until)
    ]
    wanted = {i.subscription_id for i in invoices}
    terms = [t for t in terms if t.subscription_id in wanted]
    scratch = await replay_events(settings, terms, progress=progress)
    by_id = {t.subscription_id: t for t in terms}
    return [reconcile_invoice(i, by_id[i.subscription_id], scratch) for i in invoices]
