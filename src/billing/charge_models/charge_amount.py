"""What pricing a charge returns, and the shape every charge model has."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from billing.money import to_cents


@dataclass(frozen=True, slots=True)
class TierCharge:
    """One tier's share of a tiered charge (Lago's amount_details ranges)."""

    from_value: Decimal
    to_value: Decimal | None
    units: Decimal
    # Per-unit price for graduated and volume tiers; the percentage for graduated_percentage.
    per_unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ChargeAmount:
    """A priced charge: the units, the precise (unrounded) amount and how it was reached.

    `amount` is Lago's precise amount, in the currency's major unit, never rounded here:
    the fee rounds it once, half up to the minor unit (`amount_cents`), as Lago does.
    """

    units: Decimal
    amount: Decimal
    tiers: tuple[TierCharge, ...] = ()
    # Model-specific figures (free_units, paid_units, paid_events, ...) named as Lago's
    # fee `amount_details` names them.
    details: Mapping[str, Decimal] = field(default_factory=dict, hash=False)

    def amount_cents(self, currency: str) -> int:
        """The fee amount in integer minor units, rounded half up once."""
        return to_cents(self.amount, currency)


class PriceCharge(Protocol):
    """Units to money under one charge model."""

    def __call__(
        self,
        units: Decimal,
        properties: Mapping[str, object],
        *,
        events_count: int,
        per_event_amounts: Sequence[Decimal] | None = None,
    ) -> ChargeAmount: ...


@dataclass(frozen=True, slots=True)
class ChargeModel:
    """A registry entry: Lago's `charge_model` value with its validation and pricing."""

    name: str
    validate: Callable[[Mapping[str, object]], None]
    price: PriceCharge
