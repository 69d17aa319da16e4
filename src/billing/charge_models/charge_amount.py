"""What pricing a charge returns, and the shape every charge model has."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar

from billing.money import to_cents
from billing.value import value

Terms = TypeVar("Terms")


@value
class TierCharge:
    """One tier's share of a tiered charge (Lago's amount_details ranges)."""

    from_value: Decimal
    to_value: Decimal | None
    units: Decimal
    # Per-unit price for graduated and volume tiers; the percentage for graduated_percentage.
    per_unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


@value
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


@value
class ChargeUsage:
    """What a period's events amount to for one charge: its units, how many events made
    them and, for a charge model that decides event by event, each event's value in time
    order (`event_amounts`, None when not kept)."""

    units: Decimal
    events_count: int = 0
    event_amounts: Sequence[Decimal] | None = None


@dataclass(frozen=True, slots=True)
class ChargeModel(Generic[Terms]):
    """A registry entry: Lago's `charge_model` value, how it reads a charge's properties into
    its terms (raising InvalidChargeProperties) and how it prices usage under those terms."""

    name: str
    parse: Callable[[Mapping[str, object]], Terms]
    amount: Callable[[Terms, ChargeUsage], ChargeAmount]

    def validate(self, properties: Mapping[str, object]) -> None:
        """Raise InvalidChargeProperties listing every problem of `properties`."""
        self.parse(properties)

    def price(
        self,
        units: Decimal,
        properties: Mapping[str, object],
        *,
        events_count: int,
        per_event_amounts: Sequence[Decimal] | None = None,
    ) -> ChargeAmount:
        """Price `units` (made by `events_count` events) under the charge's properties."""
        usage = ChargeUsage(units, events_count, per_event_amounts)
        return self.amount(self.parse(properties), usage)
