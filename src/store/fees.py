"""Fees' SQL, behind `GET /api/v1/fees` and `GET /api/v1/fees/{lago_id}`: the fees of the
organization's invoices (subscription, charge and add-on fees), each as its invoice shows it. Every
fee of meterflow belongs to an invoice, which carries its payment status, so Lago's fee update and
delete (for pay-in-advance fees billed on their own) have nothing to act on and are not served."""

from __future__ import annotations

from typing import Any

import asyncpg

from meterflow.db import Conn
from read_model.invoices import fee_body

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
