"""graduated_percentage: each tier takes its rate (percent) of the units in it, plus a flat fee."""

from __future__ import annotations

from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.tiers import Ladder, LadderSpelling, graduated_charge

# `graduated_percentage_ranges`: a ladder from 0 to null with a decimal `rate` (percent) and
# an optional decimal `flat_amount` on every tier.
parse = LadderSpelling(
    "graduated_percentage_ranges", "rate", "invalid_rate", flat_amount_required=False
).parse


def amount(ladder: Ladder, usage: ChargeUsage) -> ChargeAmount:
    """Sum over the tiers reached of tier units x rate / 100, plus each reached tier's flat
    amount once. The units are usually money (a sum_agg of transaction amounts)."""
    return graduated_charge(ladder, usage.units, price_divisor=Decimal(100))
