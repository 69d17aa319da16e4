"""Usage alerts' arithmetic: which of an alert's thresholds a value crossed going up, and the
value an alert watches in a current-usage body (`webhooks.alert_monitor` runs the checks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# A recurring threshold crossed more times than this in one check (a tiny step and a large
# jump) lists only the first ones; the alert still moves on to the current value.
MAX_REPEATS = 100

ALERT_TYPES = (
    "current_usage_amount",
    "billable_metric_current_usage_amount",
    "billable_metric_current_usage_units",
    "lifetime_usage_amount",
)
METRIC_TYPES = ALERT_TYPES[1:3]


@dataclass(frozen=True, slots=True)
class Threshold:
    code: str | None
    value: Decimal
    recurring: bool = False

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "value": str(self.value), "recurring": self.recurring}


def threshold(raw: Mapping[str, Any]) -> Threshold:
    """A threshold as stored (`Threshold.body`)."""
    return Threshold(raw["code"], Decimal(raw["value"]), bool(raw["recurring"]))


def crossed(
    thresholds: Sequence[Threshold], previous: Decimal, current: Decimal
) -> list[Threshold]:
    """The thresholds a value going from `previous` up to `current` crossed
    (previous < value <= current), ascending. The recurring one (at most one) stands for
    every multiple of its value above the highest other threshold: each one crossed is
    listed with its own value."""
    if current <= previous:
        return []
    fixed = [t for t in thresholds if not t.recurring]
    out = [t for t in fixed if previous < t.value <= current]
    step = next((t for t in thresholds if t.recurring), None)
    if step is not None and step.value > 0:
        base = max((t.value for t in fixed), default=Decimal(0))
        k = max(1, int((previous - base) // step.value) + 1)
        while base + k * step.value <= current and len(out) < len(fixed) + MAX_REPEATS:
            out.append(Threshold(step.code, base + k * step.value, True))
            k += 1
    return sorted(out, key=lambda t: t.value)


def watched_value(
    alert_type: str,
    metric_code: str | None,
    usage: Mapping[str, Any],
    lifetime_before: Decimal = Decimal(0),
) -> Decimal:
    """What an alert of `alert_type` watches in a `customer_usage` body: its amount in cents
    (plus, for lifetime usage, the cents before this period: `lifetime_before`), or one
    metric's amount in cents or units (summed over that metric's charges)."""
    if alert_type == "current_usage_amount":
        return Decimal(usage["amount_cents"])
    if alert_type == "lifetime_usage_amount":
        return lifetime_before + Decimal(usage["amount_cents"])
    lines = [c for c in usage["charges_usage"] if c["billable_metric"]["code"] == metric_code]
    key = "units" if alert_type == "billable_metric_current_usage_units" else "amount_cents"
    return sum((Decimal(str(c[key])) for c in lines), Decimal(0))


def json_number(value: Decimal) -> int | float:
    """A value as a JSON number: an integer when it is whole (amounts in cents, counts)."""
    return int(value) if value == value.to_integral_value() else float(value)
