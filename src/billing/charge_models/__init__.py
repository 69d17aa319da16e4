"""Lago's charge models (units to money), one module each, picked by `charge_model`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from billing.charge_models import (
    graduated,
    graduated_percentage,
    package,
    percentage,
    standard,
    volume,
)
from billing.charge_models.charge_amount import ChargeAmount, ChargeModel, PriceCharge, TierCharge

CHARGE_MODELS: Mapping[str, ChargeModel] = MappingProxyType(
    {
        model.name: model
        for model in (
            ChargeModel("standard", standard.validate, standard.price),
            ChargeModel("graduated", graduated.validate, graduated.price),
            ChargeModel(
                "graduated_percentage", graduated_percentage.validate, graduated_percentage.price
            ),
            ChargeModel("package", package.validate, package.price),
            ChargeModel("percentage", percentage.validate, percentage.price),
            ChargeModel("volume", volume.validate, volume.price),
        )
    }
)

__all__ = ["CHARGE_MODELS", "ChargeAmount", "ChargeModel", "PriceCharge", "TierCharge"]
