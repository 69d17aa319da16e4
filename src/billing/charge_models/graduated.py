"""graduated: each tier prices the units that fall in it, plus its flat amount once reached."""

from __future__ import annotations

from decimal import Decimal

from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.tiers import Ladder, LadderSpelling, graduated_charge

# `graduated_ranges`: a ladder from 0 to null with decimal `per_unit_amount` and
# `flat_amount` on every tier.
parse = LadderSpelling("graduated_ranges", "per_unit_amount", "invalid_amount").parse


def amount(ladder: Ladder, usage: ChargeUsage) -> ChargeAmount:
    """Sum over the tiers reached of tier units x per-unit amount, plus each reached tier's
    flat amount."""
    return graduated_charge(ladder, usage.units, price_divisor=Decimal(1))
