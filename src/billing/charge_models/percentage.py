"""percentage: a rate (percent) of the units, a fixed fee per paid event, free allowances.

`units` is a sum of transaction amounts. Two of Lago's paths are reproduced, quirks kept:

- Without per-transaction bounds, the free amount is the running total of the first
  `free_units_per_events` events (or, without that, of the events up to the one that
  crosses `free_units_per_total_aggregation`), capped at `free_units_per_total_aggregation`;
  events whose running total stays below that cap, at most `free_units_per_events` of them,
  are also spared the fixed fee.
- With `per_transaction_min_amount` or `per_transaction_max_amount`, each event is priced on
  its own (rate + fixed fee, then clamped to [min, max]) after the free allowances consume
  events and amounts in time order: an event is free while free events or a free amount
  remain, and the event that exhausts the free amount pays on its excess.

Both paths need every event's value in time order (`per_event_amounts`, from a sum_agg
kept with `keep_events=True`) whenever free units or bounds are set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate

from billing.aggregations.sum_agg import KeptEvents
from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.properties import PropertyErrors, non_negative_decimal

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PercentageTerms:
    rate: Decimal
    fixed_amount: Decimal | None
    free_events: int
    free_amount: Decimal
    min_amount: Decimal | None
    max_amount: Decimal | None

    @property
    def needs_events(self) -> bool:
        """True when pricing needs each event's value (free units or per-transaction bounds)."""
        return bool(self.free_events or self.free_amount or self.bounded)

    def kept_events(self) -> KeptEvents | None:
        """Which events pricing reads one by one (None: only the units and the count)."""
        if not self.needs_events:
            return None
        if self.bounded:
            return KeptEvents()
        if self.free_events:
            return KeptEvents(first=self.free_events)
        return KeptEvents(until_total=self.free_amount)

    @property
    def bounded(self) -> bool:
        return self.min_amount is not None or self.max_amount is not None


def _optional_decimal(
    properties: Mapping[str, object], key: str, code: str, errors: PropertyErrors
) -> Decimal | None:
    raw = properties.get(key)
    if raw is None:
        return None
    value = non_negative_decimal(raw)
    if value is None:
        errors.add(key, code)
    return value


def parse(properties: Mapping[str, object]) -> PercentageTerms:
    """`rate` a decimal string (percent); optional `fixed_amount`,
    `free_units_per_total_aggregation`, `per_transaction_min_amount` and
    `per_transaction_max_amount` decimal strings (min <= max), `free_units_per_events` an
    integer > 0."""
    errors = PropertyErrors()
    rate = non_negative_decimal(properties.get("rate"))
    if rate is None:
        errors.add("rate", "invalid_rate")
    fixed = _optional_decimal(properties, "fixed_amount", "invalid_fixed_amount", errors)
    raw_events = properties.get("free_units_per_events")
    free_events = 0
    if raw_events is not None:
        if isinstance(raw_events, bool) or not isinstance(raw_events, int) or raw_events <= 0:
            errors.add("free_units_per_events", "invalid_free_units_per_events")
        else:
            free_events = raw_events
    free_amount = _optional_decimal(
        properties,
        "free_units_per_total_aggregation",
        "invalid_free_units_per_total_aggregation",
        errors,
    )
    minimum = _optional_decimal(properties, "per_transaction_min_amount", "invalid_amount", errors)
    maximum = _optional_decimal(properties, "per_transaction_max_amount", "invalid_amount", errors)
    if minimum is not None and maximum is not None and minimum > maximum:
        errors.add(
            "per_transaction_max_amount", "per_transaction_max_lower_than_per_transaction_min"
        )
    errors.raise_if_any()
    assert rate is not None
    return PercentageTerms(rate, fixed, free_events, free_amount or _ZERO, minimum, maximum)


def _running_total(terms: PercentageTerms, amounts: Sequence[Decimal]) -> list[Decimal]:
    if terms.free_events:
        return list(accumulate(amounts[: terms.free_events]))
    running: list[Decimal] = []
    total = _ZERO
    for amount in amounts:
        # The event that crosses the free amount is still included: its total caps below.
        if terms.free_amount < total:
            break
        total += amount
        running.append(total)
    return running


def _aggregate_amount(
    units: Decimal, events_count: int, terms: PercentageTerms, amounts: Sequence[Decimal]
) -> ChargeAmount:
    running = _running_total(terms, amounts) if terms.needs_events else []
    last = running[-1] if running else _ZERO
    free_units = last if not terms.free_amount or last <= terms.free_amount else terms.free_amount
    rate_amount = _ZERO if free_units > units else (units - free_units) * terms.rate / _HUNDRED
    below_cap = sum(1 for total in running if total < terms.free_amount)
    free_counts = [count for count in (terms.free_events, below_cap) if count]
    free_events = min(free_counts) if free_counts else 0
    paid_events = max(events_count - free_events, 0)
    fixed_total = _ZERO
    if units and terms.fixed_amount is not None and paid_events:
        fixed_total = paid_events * terms.fixed_amount
    return ChargeAmount(
        units,
        rate_amount + fixed_total,
        details={
            "units": units,
            "free_units": min(free_units, units),
            "paid_units": max(units - free_units, _ZERO),
            "rate": terms.rate,
            "per_unit_total_amount": rate_amount,
            "free_events": Decimal(min(free_events, events_count)),
            "paid_events": Decimal(paid_events),
            "fixed_fee_unit_amount": terms.fixed_amount or _ZERO,
            "fixed_fee_total_amount": fixed_total,
        },
    )


def _per_transaction_amount(
    units: Decimal, terms: PercentageTerms, amounts: Sequence[Decimal]
) -> ChargeAmount:
    free_events = terms.free_events
    free_amount = terms.free_amount
    total = _ZERO
    unbounded_total = _ZERO
    paid_events = 0
    for amount in amounts:
        value = amount
        if free_events > 0 or free_amount > 0:
            free_events -= 1
            if free_amount <= 0:
                continue
            if free_amount > value:
                free_amount -= value
                continue
            value -= free_amount
            free_amount = _ZERO
            free_events = 0
        event_amount = value * terms.rate / _HUNDRED + (terms.fixed_amount or _ZERO)
        unbounded_total += event_amount
        if terms.min_amount is not None and event_amount < terms.min_amount:
            event_amount = terms.min_amount
        elif terms.max_amount is not None and event_amount > terms.max_amount:
            event_amount = terms.max_amount
        total += event_amount
        paid_events += 1
    return ChargeAmount(
        units,
        total,
        details={
            "units": units,
            "rate": terms.rate,
            "paid_events": Decimal(paid_events),
            "fixed_fee_unit_amount": terms.fixed_amount or _ZERO,
            "min_max_adjustment_total_amount": total - unbounded_total,
        },
    )


def amount(terms: PercentageTerms, usage: ChargeUsage) -> ChargeAmount:
    """Price a period's transactions. When free units or per-transaction bounds are set,
    `usage.event_amounts` must hold the events' values in time order: one per event, or
    fewer when the first value stands for the events counted before they were kept (see the
    module's docstring)."""
    amounts: Sequence[Decimal] = ()
    if terms.needs_events:
        amounts = _event_amounts(usage)
    if terms.bounded:
        return _per_transaction_amount(usage.units, terms, amounts)
    return _aggregate_amount(usage.units, usage.events_count, terms, amounts)


def _event_amounts(usage: ChargeUsage) -> Sequence[Decimal]:
    if usage.event_amounts is None:
        if usage.events_count == 0:
            return ()
        raise ValueError(
            "percentage pricing with free units or per-transaction bounds needs "
            "per_event_amounts (a sum_agg kept with keep_events=True)"
        )
    if len(usage.event_amounts) > usage.events_count or (
        usage.events_count and not usage.event_amounts
    ):
        raise ValueError(
            f"per_event_amounts holds {len(usage.event_amounts)} values "
            f"for {usage.events_count} events"
        )
    return usage.event_amounts
