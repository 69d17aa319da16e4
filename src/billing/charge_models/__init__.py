"""Lago's charge models (units to money), one module each, picked by `charge_model`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from billing.aggregations import Aggregation, SumAggregation
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


def needs_event_amounts(charge_model: str, properties: Mapping[str, object]) -> bool:
    """True when pricing the charge needs each event's value in time order, not only the
    period's units: a percentage charge with free units or per-transaction bounds."""
    if charge_model != "percentage":
        return False
    try:
        return percentage.parse(properties).needs_events
    except InvalidChargeProperties:
        return False


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
    "needs_event_amounts",
    "price_state",
]
