"""Lago's charge models (units to money), one module each, picked by `charge_model`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from billing.aggregations import AGGREGATIONS, Aggregation, SumAggregation
from billing.aggregations.sum_agg import KeptEvents
from billing.charge_models import (
    graduated,
    graduated_percentage,
    package,
    percentage,
    standard,
    volume,
)
from billing.charge_models.charge_amount import ChargeAmount, ChargeModel, ChargeUsage, TierCharge
from billing.errors import InvalidChargeProperties
from billing.periods import BillingPeriod

CHARGE_MODELS: Mapping[str, ChargeModel[Any]] = MappingProxyType(
    {
        model.name: model
        for model in (
            ChargeModel("standard", standard.parse, standard.amount),
            ChargeModel("graduated", graduated.parse, graduated.amount),
            ChargeModel(
                "graduated_percentage", graduated_percentage.parse, graduated_percentage.amount
            ),
            ChargeModel("package", package.parse, package.amount),
            ChargeModel("percentage", percentage.parse, percentage.amount),
            ChargeModel("volume", volume.parse, volume.amount),
        )
    }
)


def kept_events(charge_model: str, properties: Mapping[str, object]) -> KeptEvents | None:
    """Which of a period's events pricing the charge reads one by one, in time order (None
    when the units and the events count are enough): a percentage charge with free units
    reads the free prefix, one with per-transaction bounds every event."""
    if charge_model != "percentage":
        return None
    try:
        return percentage.parse(properties).kept_events()
    except InvalidChargeProperties:
        return None


def charge_state(
    aggregation_type: str,
    charge_model: str,
    properties: Mapping[str, object],
    period: BillingPeriod,
    snapshot: Mapping[str, object] | None = None,
) -> Aggregation:
    """A charge's usage state for the period: a fresh one, or the one `snapshot` describes.
    A sum priced event by event keeps the events `kept_events` names, also when restored
    from a snapshot that kept none (the charge gained those terms mid-period: see
    SumAggregation.event_amounts)."""
    kind = AGGREGATIONS[aggregation_type]
    state = kind.initialize(period) if snapshot is None else kind.from_dict(snapshot)
    kept = kept_events(charge_model, properties)
    if kept is not None and isinstance(state, SumAggregation):
        state.keep_events(kept)
    return state


def price_state(
    charge_model: str, properties: Mapping[str, object], state: Aggregation
) -> ChargeAmount:
    """Price an aggregation state under a charge: its units, its events and, from a sum that
    keeps them, each event's value."""
    amounts = None
    if isinstance(state, SumAggregation) and state.events is not None:
        amounts = state.event_amounts()
    return CHARGE_MODELS[charge_model].price(
        state.result(), properties, events_count=state.events_count, per_event_amounts=amounts
    )


__all__ = [
    "CHARGE_MODELS",
    "ChargeAmount",
    "ChargeModel",
    "ChargeUsage",
    "TierCharge",
    "charge_state",
    "kept_events",
    "price_state",
]
