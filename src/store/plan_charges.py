"""A plan's charges one at a time (`/api/v1/plans/{code}/charges[/{charge_code}]`). Each
change is an update of the plan with its whole charge list, so a charge is validated against
its metric and model, versioned and published exactly as when the plan is sent whole."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn
from store import code_keyed
from store.plans import PLANS
from web.errors import NotFound, ValidationFailed

Body = dict[str, Any]

_KEPT = (
    "code",
    "invoice_display_name",
    "charge_model",
    "pay_in_advance",
    "invoiceable",
    "regroup_paid_fees",
    "prorated",
    "min_amount_cents",
    "properties",
    "filters",
)


def _as_input(charge: Body) -> Body:
    """The input that keeps a charge as it is (its id, metric and fields; taxes untouched)."""
    return {
        "id": charge["lago_id"],
        "billable_metric_id": charge["lago_billable_metric_id"],
        **{name: charge[name] for name in _KEPT},
    }


def _named(charges: list[Body], charge_code: str) -> int:
    """The position of the charge with this `code` (or, for a charge without one, this
    `lago_id`); `charge_not_found` when none."""
    for i, charge in enumerate(charges):
        if charge["code"] == charge_code:
            return i
    for i, charge in enumerate(charges):
        if charge["lago_id"] == charge_code:
            return i
    raise NotFound("charge")


async def _plan_with(conn: Conn, org: uuid.UUID, plan: asyncpg.Record, inputs: list[Body]) -> Body:
    """Update the plan (locked) to exactly these charge inputs; errors of the one charge being
    written are named `charge.<field>` rather than `charges.<i>.<field>`."""
    codes = [c.get("code") for c in inputs if c.get("code") is not None]
    if len(codes) != len(set(codes)):
        raise ValidationFailed({"charge.code": ["value_already_exist"]})
    try:
        return await code_keyed.update(PLANS, conn, org, plan, {"charges": inputs})
    except ValidationFailed as exc:
        exc.error_details = {
            "charge." + key.split(".", 2)[2] if key.startswith("charges.") else key: codes
            for key, codes in exc.error_details.items()
        }
        raise


async def plan_charges(conn: Conn, plan: asyncpg.Record) -> list[Body]:
    """The plan's charges as its body shows them (taxes included), in order."""
    body: Body = await code_keyed.answer(PLANS, conn, plan)
    charges: list[Body] = body["charges"]
    return charges


async def plan_charge(conn: Conn, plan: asyncpg.Record, charge_code: str) -> Body:
    charges = await plan_charges(conn, plan)
    return charges[_named(charges, charge_code)]


async def add_charge(conn: Conn, org: uuid.UUID, plan: asyncpg.Record, raw: Body) -> Body:
    """Append a charge to the plan (locked)."""
    charges = await plan_charges(conn, plan)
    new = {k: v for k, v in raw.items() if k not in ("id", "cascade_updates")}
    body = await _plan_with(conn, org, plan, [*map(_as_input, charges), new])
    added: Body = body["charges"][-1]
    return added


async def change_charge(
    conn: Conn, org: uuid.UUID, plan: asyncpg.Record, charge_code: str, raw: Body
) -> Body:
    """Change the fields `raw` names of one of the plan's (locked) charges; it keeps its id."""
    charges = await plan_charges(conn, plan)
    i = _named(charges, charge_code)
    inputs = [_as_input(c) for c in charges]
    given = {k: v for k, v in raw.items() if k not in ("id", "cascade_updates")}
    inputs[i] = {**inputs[i], **given}
    body = await _plan_with(conn, org, plan, inputs)
    changed: Body = body["charges"][i]
    return changed


async def remove_charge(conn: Conn, org: uuid.UUID, plan: asyncpg.Record, charge_code: str) -> Body:
    """Remove one of the plan's (locked) charges; its body as it was is returned."""
    charges = await plan_charges(conn, plan)
    i = _named(charges, charge_code)
    await _plan_with(conn, org, plan, [_as_input(c) for j, c in enumerate(charges) if j != i])
    return charges[i]
