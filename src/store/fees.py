"""Fees' SQL, behind `GET /api/v1/fees` and `GET /api/v1/fees/{lago_id}`: the fees of the
organization's invoices (subscription, charge and add-on fees), each as its invoice shows it. Every
fee of meterflow belongs to an invoice, which carries its payment status, so Lago's fee update and
delete (for pay-in-advance fees billed on their own) have nothing to act on and are not served."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn
from read_model.invoices import fee_body
from store import database
from web.errors import NotFound
from web.payload import object_id

FEE_TYPES = ("subscription", "charge", "add_on")


FEES_FROM = (
    "FROM fees f JOIN invoices i ON i.id = f.invoice_id JOIN customers c ON c.id = i.customer_id "
    "LEFT JOIN subscriptions s ON s.id = i.subscription_id "
)


async def fee_bodies(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Each fee (with `external_customer_id` and `external_subscription_id`) as its invoice
    shows it."""
    invoices = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT * FROM invoices WHERE id = ANY($1::uuid[])",
            list({r["invoice_id"] for r in rows}),
        )
    }
    return [
        fee_body(
            r,
            invoices[r["invoice_id"]],
            {"customer": r["external_customer_id"], "subscription": r["external_subscription_id"]},
        )
        for r in rows
    ]


FEES = database.Listing(
    "SELECT f.*, c.external_id AS external_customer_id, "
    "s.external_id AS external_subscription_id " + FEES_FROM,
    "i.organization_id = {}",
    {
        "external_customer_id": "c.external_id = {}",
        "external_subscription_id": "s.external_id = {}",
        "currency": "f.currency = {}",
        "fee_type": "f.fee_type = {}",
        "billable_metric_code": "(f.fee_type = 'charge' AND f.item_code = {})",
        "payment_status": "i.payment_status = {}",
        "created_at_from": "f.created_at >= {}",
        "created_at_to": "f.created_at <= {}",
    },
    "f.created_at DESC, f.invoice_id, f.position",
)

list_fees = database.pager(FEES, fee_bodies)


async def fee_of(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """One of the organization's fees, or `fee_not_found` (a malformed id included)."""
    fee_id = object_id(lago_id, "fee")
    row = await conn.fetchrow(
        FEES.select + "WHERE f.id = $1 AND i.organization_id = $2", fee_id, org
    )
    if row is None:
        raise NotFound("fee")
    (body,) = await fee_bodies(conn, [row])
    return body
