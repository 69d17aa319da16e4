"""`/api/v1/applied_coupons`: coupons applied to customers."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn

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


async def insert_applied_coupon(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    applied_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO applied_coupons (id, organization_id, coupon_id, customer_id, amount_cents, "
        "amount_currency, percentage_rate, frequency, frequency_duration, "
        "frequency_duration_remaining) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        applied_id,
        org,
        columns["coupon_id"],
        columns["customer_id"],
        columns["amount_cents"],
        columns["amount_currency"],
        columns["percentage_rate"],
        columns["frequency"],
        columns["frequency_duration"],
    )
    return applied_id


async def end_customer_credits(conn: Conn, customer_id: uuid.UUID) -> None:
    """Terminate the customer's applied coupons and wallets (its deletion, as in Lago)."""
    await conn.execute(
        "UPDATE applied_coupons SET status = 'terminated', terminated_at = now(), "
        "updated_at = now() WHERE customer_id = $1 AND status = 'active'",
        customer_id,
    )
    await conn.execute(
        "UPDATE wallets SET status = 'terminated', terminated_at = now(), updated_at = now() "
        "WHERE customer_id = $1 AND status = 'active'",
        customer_id,
    )


async def terminate_applied_coupon(conn: Conn, applied_coupon_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE applied_coupons SET status = 'terminated', terminated_at = now(), "
        "updated_at = now() WHERE id = $1 AND status = 'active'",
        applied_coupon_id,
    )


async def list_applied_coupons(
    conn: Conn,
    org: uuid.UUID,
    *,
    external_customer_id: str | None,
    status: str | None,
    coupon_codes: list[str] | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = (
        "WHERE ac.organization_id = $1 AND ($2::text IS NULL OR cu.external_id = $2) "
        "AND cu.deleted_at IS NULL AND ($3::text IS NULL OR ac.status = $3) "
        "AND ($4::text[] IS NULL OR c.code = ANY($4::text[])) "
    )
    args = (org, external_customer_id, status, coupon_codes)
    total = await conn.fetchval(
        "SELECT count(*) FROM applied_coupons ac JOIN coupons c ON c.id = ac.coupon_id "
        "JOIN customers cu ON cu.id = ac.customer_id " + where,
        *args,
    )
    rows = await conn.fetch(
        _APPLIED_COUPON + where + "ORDER BY ac.created_at DESC, ac.id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)
