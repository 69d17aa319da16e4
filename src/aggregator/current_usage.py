"""A subscription's usage in its current period, in Lago's `customer_usage` shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aggregator.catalog_view import SubscriptionTerms
from aggregator.domain import Domain
from aggregator.ledger import iso


def _lago_time(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


class UsageFailed(Exception):
    """Pricing one charge's current usage failed: a bug (or catalog data the checks let
    through), never the aggregator being unavailable. Log it with the subscription and the
    charge, fix the charge's properties or the code named in the traceback."""

    def __init__(self, subscription_id: str, charge_id: str) -> None:
        super().__init__(f"current usage of charge {charge_id} failed")
        self.subscription_id = subscription_id
        self.charge_id = charge_id


def current_usage(
    domain: Domain, terms: SubscriptionTerms, ledger: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Units, events and amounts of every charge of the period containing `now`; raises
    UsageFailed (from the original error) when a charge cannot be priced."""
    start, full_end = domain.period(terms, now)
    end = full_end
    if terms.terminated_at is not None and terms.terminated_at < end:
        end = max(terms.terminated_at, start)
    period = (ledger or {}).get("periods", {}).get(iso(start)) or {"charges": {}}
    charges_usage = []
    amount_cents = 0
    for charge in terms.charges:
        data = period["charges"].get(charge.charge_id)
        try:
            state = domain.new_state(charge, start, full_end, data)
            units = state.result()
            cents = domain.amount_cents(charge, state, terms.currency)
        except Exception as exc:
            raise UsageFailed(terms.subscription_id, charge.charge_id) from exc
        amount_cents += cents
        charges_usage.append(
            {
                "units": str(units),
                "total_aggregated_units": str(units),
                "events_count": state.events_count,
                "amount_cents": cents,
                "amount_currency": terms.currency,
                "charge": {
                    "lago_id": charge.charge_id,
                    "charge_model": charge.charge_model,
                    "invoice_display_name": charge.charge.get("invoice_display_name"),
                },
                "billable_metric": {
                    "lago_id": charge.metric_id,
                    "name": charge.metric.get("name", charge.metric_code),
                    "code": charge.metric_code,
                    "aggregation_type": charge.aggregation_type,
                },
                "filters": [],
                "grouped_usage": [],
            }
        )
    return {
        "customer_usage": {
            "from_datetime": _lago_time(start),
            "to_datetime": _lago_time(end),
            "issuing_date": end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": terms.currency,
            "amount_cents": amount_cents,
            "taxes_amount_cents": 0,
            "total_amount_cents": amount_cents,
            "charges_usage": charges_usage,
        }
    }
