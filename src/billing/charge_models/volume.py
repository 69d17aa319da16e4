"""volume: every unit at the price of the one tier the total reaches, plus its flat amount.

Unlike graduated pricing this is not monotonic: crossing into a cheaper tier can lower the
whole charge (100 units at 1.00 cost 100.00; 101 at 0.50 cost 50.50). That is Lago's
documented behaviour, kept as is.

The reached tier is the first whose `to_value` is null or at least the units, so a
fractional total between a non-adjacent tier's end and the next one's start (100.5 in
`0-100, 101-null`) belongs to the upper tier, as Lago finds it (`from_value <= units.ceil`).
"""

from __future__ import annotations

from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.tiers import Ladder, LadderSpelling, volume_charge

# `volume_ranges`: a ladder from 0 to null with decimal `per_unit_amount` and `flat_amount`
# on every tier.
parse = LadderSpelling("volume_ranges", "per_unit_amount", "invalid_amount").parse


def amount(ladder: Ladder, usage: ChargeUsage) -> ChargeAmount:
    """units x the reached tier's per-unit amount + its flat amount (0 units: the first
    tier's flat amount)."""
    return volume_charge(ladder, usage.units)
