"""Coupons' rules and SQL: discounts (their applications to customers are
`store.applied_coupons`).

How the invoicer uses them (`invoicing.pricing`): every invoice takes the customer's active
applied coupons, oldest first, off its fees before taxes. A `once` fixed amount carries
what it did not use to the next invoices; a `recurring` one loses a period per invoice it
reduces (its unused value in that period is lost); a `forever` one never runs out; a
`once` percentage ends after one invoice. The new state is written in the transaction
that inserts the invoice, so a replayed period cannot consume a coupon twice.

Expiry (`expiration` `time_limit`): once `expiration_at` has passed, or once the coupon is
deleted, it can no longer be applied; customers it was applied to keep it (as Lago's
`terminated_at` says), except that deleting a coupon terminates its applications, as
Lago's deletion does. Plan and billable-metric limits (`applies_to`) are not supported.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from meterflow.db import Conn
from store import code_keyed, database
from web.payload import (
    MANDATORY,
    Fields,
    currency,
    iso,
    isos,
)

_COUPON = {
    "name",
    "code",
    "description",
    "coupon_type",
    "amount_cents",
    "amount_currency",
    "reusable",
    "percentage_rate",
    "frequency",
    "frequency_duration",
    "expiration",
    "expiration_at",
    "applies_to",
}


# What an applied coupon's update may still change (Lago's rule).
_ALWAYS_EDITABLE = ("name", "description", "expiration", "expiration_at")


COUPON_TYPES = ("fixed_amount", "percentage")


FREQUENCIES = ("once", "recurring", "forever")


EXPIRATIONS = ("no_expiration", "time_limit")


def rate_text(rate: Decimal | None) -> str | None:
    if rate is None:
        return None
    return str(rate.normalize() + Decimal("0.0"))


def is_expired(row: asyncpg.Record, now: datetime) -> bool:
    at: datetime | None = row["expiration_at"]
    return row["expiration"] == "time_limit" and at is not None and at <= now


def coupon_body(row: asyncpg.Record) -> dict[str, Any]:
    now = datetime.now(UTC)
    terminated_at = row["terminated_at"] or (row["expiration_at"] if is_expired(row, now) else None)
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "code": row["code"],
        "description": row["description"],
        "coupon_type": row["coupon_type"],
        "amount_cents": row["amount_cents"],
        "amount_currency": row["amount_currency"],
        "reusable": row["reusable"],
        "limited_plans": False,
        "plan_codes": [],
        "limited_billable_metrics": False,
        "billable_metric_codes": [],
        "percentage_rate": rate_text(row["percentage_rate"]),
        "frequency": row["frequency"],
        "frequency_duration": row["frequency_duration"],
        "expiration": row["expiration"],
        **isos(row, "expiration_at", "created_at"),
        "terminated_at": iso(terminated_at),
    }


def coupon_terms(fields: Fields, merged: dict[str, Any]) -> None:
    """Check the discount terms as a whole: each type and frequency has what it needs."""
    if merged.get("coupon_type") == "fixed_amount":
        for name in ("amount_cents", "amount_currency"):
            if merged.get(name) is None and name not in fields.errors:
                fields.add(name, MANDATORY)
        merged["percentage_rate"] = None
    elif merged.get("coupon_type") == "percentage":
        if merged.get("percentage_rate") is None and "percentage_rate" not in fields.errors:
            fields.add("percentage_rate", MANDATORY)
        merged["amount_cents"] = merged["amount_currency"] = None
    if merged.get("frequency") == "recurring":
        if merged.get("frequency_duration") is None and "frequency_duration" not in fields.errors:
            fields.add("frequency_duration", MANDATORY)
    else:
        merged["frequency_duration"] = None


def parse_coupon(
    raw: dict[str, Any], current: asyncpg.Record | None, *, applied: bool = False
) -> dict[str, Any]:
    """The coupon after this input; raises ValidationFailed. Once a coupon has been
    applied, only its name, description and expiry change (the rest is ignored)."""
    fields = Fields(raw, _COUPON)
    creating = current is None

    def required(name: str) -> bool:
        # Lago sets a field an update names, null included, and a coupon cannot be without
        # these: a null is refused as missing, never written.
        return creating or fields.has(name)

    given: dict[str, Any] = {
        "name": fields.text("name", required=required("name")),
        "code": fields.text("code", required=required("code")),
        "description": fields.text("description", max_length=10_000),
        "coupon_type": fields.text(
            "coupon_type", required=required("coupon_type"), choices=COUPON_TYPES
        ),
        "amount_cents": fields.integer("amount_cents", minimum=0),
        "amount_currency": currency(fields, "amount_currency"),
        "percentage_rate": fields.decimal(
            "percentage_rate", low=Decimal(0), high=Decimal(100), low_open=True
        ),
        "reusable": fields.flag("reusable"),
        "frequency": fields.text("frequency", required=required("frequency"), choices=FREQUENCIES),
        "frequency_duration": fields.integer("frequency_duration", minimum=1),
        "expiration": fields.text(
            "expiration", required=required("expiration"), choices=EXPIRATIONS
        ),
        "expiration_at": fields.instant("expiration_at"),
    }
    applies_to = fields.mapping("applies_to")
    if applies_to and any(applies_to.get(k) for k in ("plan_codes", "billable_metric_codes")):
        fields.add("applies_to", "not_supported")
    merged: dict[str, Any] = (
        {"reusable": True, "description": None, "expiration_at": None}
        if current is None
        else {name: current[name] for name in COUPON_COLUMNS}
    )
    editable = _ALWAYS_EDITABLE if applied else tuple(given)
    merged.update({k: v for k, v in given.items() if fields.has(k) and k in editable})
    if merged.get("reusable") is None:
        merged["reusable"] = True
    coupon_terms(fields, merged)
    if merged.get("expiration") == "time_limit":
        at = merged.get("expiration_at")
        if at is None and "expiration_at" not in fields.errors:
            fields.add("expiration_at", MANDATORY)
        elif at is not None and fields.has("expiration_at") and at <= datetime.now(UTC):
            fields.add("expiration_at", "invalid_date")
    else:
        merged["expiration_at"] = None
    fields.check()
    return merged


COUPON_COLUMNS = (
    "code",
    "name",
    "description",
    "coupon_type",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
    "frequency",
    "frequency_duration",
    "reusable",
    "expiration",
    "expiration_at",
)


coupon_by_code = database.code_lookup("coupons", live=True)


async def delete_coupon(conn: Conn, coupon: asyncpg.Record) -> asyncpg.Record:
    """Soft-delete and terminate the coupon, and terminate its active applications."""
    coupon_id = coupon["id"]
    await database.terminate_active(conn, "applied_coupons", "coupon_id", coupon_id)
    row = await conn.fetchrow(
        "UPDATE coupons SET deleted_at = now(), status = 'terminated', "
        "terminated_at = coalesce(terminated_at, now()), updated_at = now() "
        "WHERE id = $1 RETURNING *",
        coupon_id,
    )
    assert row is not None
    return row


async def coupon_applied(conn: Conn, coupon_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM applied_coupons WHERE coupon_id = $1 LIMIT 1", coupon_id
    )
    return found is not None


async def _parse(
    conn: Conn, org: uuid.UUID, raw: dict[str, Any], current: asyncpg.Record | None
) -> dict[str, Any]:
    applied = current is not None and await coupon_applied(conn, current["id"])
    return parse_coupon(raw, current, applied=applied)


COUPONS = code_keyed.CodeKeyed(
    "coupon",
    "coupons",
    coupon_by_code,
    _parse,
    COUPON_COLUMNS,
    delete_coupon,
    database.each(coupon_body),
)
list_coupons = COUPONS.listing
