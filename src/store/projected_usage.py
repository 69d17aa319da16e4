"""Projected usage: the current period's usage (the aggregator's answer) carried to the
period's end at the pace it has had so far, as Lago's `customer_projected_usage`.

Counts and sums grow with time, so their units (and events) are divided by the part of the
period that has passed and priced again under the charge's model. Every other aggregation
(max, latest, unique count, weighted sum) describes a level, not a pace: it is projected as
it is. A charge whose price needs every event's value (a percentage with free units or
per-transaction bounds) has its amount carried at the same pace instead."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.charge_models import CHARGE_MODELS
from meterflow.db import Conn

# Aggregations whose units grow with time.
_PACED = frozenset({"count_agg", "sum_agg"})
_PLACES = Decimal("0.0001")


def _instant(lago_time: str) -> datetime:
    return datetime.fromisoformat(lago_time.replace("Z", "+00:00"))


def _number(value: Decimal) -> str:
    """A decimal as Lago's usage strings spell it: plain digits, no trailing zeros."""
    text = format(value.quantize(_PLACES), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def elapsed_share(usage: Mapping[str, Any], now: datetime) -> Decimal:
    """How much of the period [from_datetime, to_datetime) has passed at `now`, 0 to 1."""
    start, end = _instant(usage["from_datetime"]), _instant(usage["to_datetime"])
    if end <= start:
        return Decimal(1)
    passed = min(max(now, start), end) - start
    return Decimal(passed.total_seconds()) / Decimal((end - start).total_seconds())


def _projected_line(
    line: dict[str, Any], properties: Mapping[str, object] | None, share: Decimal
) -> dict[str, Any]:
    units, events, cents = Decimal(line["units"]), line["events_count"], line["amount_cents"]
    paced = line["billable_metric"]["aggregation_type"] in _PACED and share > 0
    projected_units, projected_events, projected_cents = units, events, cents
    if paced:
        projected_units = units / share
        projected_events = int((Decimal(events) / share).to_integral_value())
        try:
            if properties is None:
                raise ValueError("the charge is no longer in the catalog")
            priced = CHARGE_MODELS[line["charge"]["charge_model"]].price(
                projected_units, properties, events_count=projected_events
            )
            projected_cents = priced.amount_cents(line["amount_currency"])
        except ValueError:
            projected_cents = int((Decimal(cents) / share).to_integral_value())
    return {
        **line,
        "projected_units": _number(projected_units),
        "projected_amount_cents": projected_cents,
    }


def project(
    current: Mapping[str, Any], properties: Mapping[str, Mapping[str, object]], now: datetime
) -> dict[str, Any]:
    """`current` (a `customer_usage` object) projected to its period's end at `now`;
    `properties` are the charges' properties by charge id."""
    share = elapsed_share(current, now)
    lines = [
        _projected_line(line, properties.get(line["charge"]["lago_id"]), share)
        for line in current["charges_usage"]
    ]
    return {
        **current,
        "projected_amount_cents": sum(line["projected_amount_cents"] for line in lines),
        "charges_usage": lines,
    }


async def charge_properties(
    conn: Conn, org: uuid.UUID, charge_ids: list[str]
) -> dict[str, Mapping[str, object]]:
    """The properties of the organization's charges among `charge_ids`, by id."""
    rows = await conn.fetch(
        "SELECT ch.id::text AS id, ch.properties FROM charges ch "
        "JOIN plans p ON p.id = ch.plan_id "
        "WHERE p.organization_id = $1 AND ch.id::text = ANY($2::text[])",
        org,
        charge_ids,
    )
    return {r["id"]: r["properties"] for r in rows}
