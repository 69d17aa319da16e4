"""Applied coupons' rules and SQL: coupons applied to customers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from meterflow import db
from meterflow.db import Conn
from store import coupons, customers, database
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, currency, iso, isos

_APPLIED_COUPON = (
    "SELECT ac.*, c.code AS coupon_code, c.name AS coupon_name, c.expiration_at, "
    "c.status AS coupon_status, c.deleted_at AS coupon_deleted_at, "
    "cu.external_id AS external_customer_id "
    "FROM applied_coupons ac JOIN coupons c ON c.id = ac.coupon_id "
    "JOIN customers cu ON cu.id = ac.customer_id "
)


async def applied_coupon_by_id(conn: Conn, applied_coupon_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_APPLIED_COUPON + "WHERE ac.id = $1", applied_coupon_id)


async def applications_of(conn: Conn, customer_id: uuid.UUID, coupon_id: uuid.UUID) -> int:
    """How many times the coupon was applied to the customer, ended applications included."""
    count = await conn.fetchval(
        "SELECT count(*) FROM applied_coupons WHERE customer_id = $1 AND coupon_id = $2",
        customer_id,
        coupon_id,
    )
    return int(count)


_INSERTED = (
    "coupon_id",
    "customer_id",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
    "frequency",
    "frequency_duration",
    "frequency_duration_remaining",
)


async def insert_applied_coupon(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    """A new application; all of its `frequency_duration` remains."""
    remaining = {**columns, "frequency_duration_remaining": columns["frequency_duration"]}
    return await database.insert_new(conn, "applied_coupons", org, _INSERTED, remaining)


async def terminate_applied_coupon(conn: Conn, applied_coupon_id: uuid.UUID) -> None:
    await database.terminate_active(conn, "applied_coupons", "id", applied_coupon_id)


_APPLIED = {
    "external_customer_id",
    "coupon_code",
    "frequency",
    "frequency_duration",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
}


def applied_coupon_body(row: asyncpg.Record) -> dict[str, Any]:
    remaining = row["amount_cents_remaining"]
    if remaining is None and row["frequency"] == "once" and row["amount_cents"] is not None:
        remaining = row["amount_cents"]
    return {
        "lago_id": str(row["id"]),
        "lago_coupon_id": str(row["coupon_id"]),
        "coupon_code": row["coupon_code"],
        "coupon_name": row["coupon_name"],
        "coupon_status": "terminated" if row["coupon_deleted_at"] else row["coupon_status"],
        "coupon_deleted_at": iso(row["coupon_deleted_at"]),
        "lago_customer_id": str(row["customer_id"]),
        "external_customer_id": row["external_customer_id"],
        "status": row["status"],
        "amount_cents": row["amount_cents"],
        "amount_cents_remaining": remaining if row["amount_cents"] is not None else None,
        "amount_currency": row["amount_currency"],
        "percentage_rate": coupons.rate_text(row["percentage_rate"]),
        "frequency": row["frequency"],
        "frequency_duration": row["frequency_duration"],
        "frequency_duration_remaining": row["frequency_duration_remaining"],
        **isos(row, "expiration_at", "created_at", "terminated_at"),
        "credits": [],
    }


async def apply_coupon(
    ctx: IngestContext, org: Organization, raw: dict[str, Any]
) -> dict[str, Any]:
    """Apply a coupon to a customer, with optional overrides of its amount, rate and
    frequency. 404 for an unknown customer, or a coupon unknown, deleted or expired
    (Lago looks among active coupons only); 422 `coupon_is_not_reusable` for a second
    application of a non-reusable coupon (even once the first has ended, as in Lago),
    `currencies_does_not_match` for a fixed amount in another currency than the
    customer's."""
    fields = Fields(raw, _APPLIED)
    external_customer_id = fields.text("external_customer_id", required=True)
    coupon_code = fields.text("coupon_code", required=True)
    overrides: dict[str, Any] = {
        "frequency": fields.text("frequency", choices=coupons.FREQUENCIES),
        "frequency_duration": fields.integer("frequency_duration", minimum=1),
        "amount_cents": fields.integer("amount_cents", minimum=0),
        "amount_currency": currency(fields, "amount_currency"),
        "percentage_rate": fields.decimal(
            "percentage_rate", low=Decimal(0), high=Decimal(100), low_open=True
        ),
    }
    fields.check()
    assert external_customer_id is not None and coupon_code is not None
    async with db.unit_of_work(ctx.db) as conn:
        customer = await customers.customer_by_external_id(
            conn, org.id, external_customer_id, lock=True
        )
        if customer is None:
            raise NotFound("customer")
        coupon = await coupons.coupon_by_code(conn, org.id, coupon_code)
        if (
            coupon is None
            or coupon["status"] != "active"
            or coupons.is_expired(coupon, datetime.now(UTC))
        ):
            raise NotFound("coupon")
        terms = {name: coupon[name] for name in coupons.COUPON_COLUMNS}
        terms.update({k: v for k, v in overrides.items() if fields.has(k)})
        checked = Fields({}, ())
        coupons.coupon_terms(checked, terms)
        checked.check()
        if not coupon["reusable"] and await applications_of(conn, customer["id"], coupon["id"]):
            raise ValidationFailed({"coupon": ["coupon_is_not_reusable"]})
        if (
            terms["coupon_type"] == "fixed_amount"
            and customer["currency"] is not None
            and terms["amount_currency"] != customer["currency"]
        ):
            raise ValidationFailed({"currency": ["currencies_does_not_match"]})
        applied_id = await insert_applied_coupon(
            conn, org.id, {**terms, "coupon_id": coupon["id"], "customer_id": customer["id"]}
        )
        row = await applied_coupon_by_id(conn, applied_id)
    assert row is not None
    return applied_coupon_body(row)


async def remove_applied_coupon(
    conn: Conn, org: uuid.UUID, external_customer_id: str, applied_id: uuid.UUID
) -> dict[str, Any]:
    """Terminate one of the customer's applied coupons: later invoices no longer use it."""
    customer = await customers.customer_by_external_id(conn, org, external_customer_id, lock=True)
    if customer is None:
        raise NotFound("customer")
    row = await applied_coupon_by_id(conn, applied_id)
    if row is None or row["customer_id"] != customer["id"]:
        raise NotFound("applied_coupon")
    await terminate_applied_coupon(conn, applied_id)
    row = await applied_coupon_by_id(conn, applied_id)
    assert row is not None
    return applied_coupon_body(row)


APPLIED_COUPONS = database.Listing(
    _APPLIED_COUPON,
    "ac.organization_id = {} AND cu.deleted_at IS NULL",
    {
        "external_customer_id": "cu.external_id = {}",
        "status": "ac.status = {}",
        "coupon_codes": "c.code = ANY({}::text[])",
    },
    "ac.created_at DESC, ac.id",
)

# A page of applied coupons (of the customer `external_customer_id` names, if any, who must
# exist) as the API shows them, and how many match.
list_applied_coupons = database.pager(
    APPLIED_COUPONS,
    database.each(applied_coupon_body),
    check=customers.check_filtered_customer,
)
