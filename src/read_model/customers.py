"""How the API shows a customer, read the same way by the customers API, the invoices and
credit notes that embed it, the console and the catalog topic."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow.db import Conn, existing_row
from web.payload import isos

ADDRESS_FIELDS = ("address_line1", "address_line2", "city", "country", "state", "zipcode")


CUSTOMER_TEXT_FIELDS = (
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zipcode",
    "email",
    "legal_name",
    "legal_number",
    "logo_url",
    "name",
    "firstname",
    "lastname",
    "phone",
    "tax_identification_number",
    "url",
    "billing_entity_code",
)


SELECT_CUSTOMER = (
    "SELECT c.*, o.timezone AS organization_timezone FROM customers c "
    "JOIN organizations o ON o.id = c.organization_id "
)


async def customer_by_id(conn: Conn, customer_id: uuid.UUID) -> asyncpg.Record:
    return await existing_row(conn, SELECT_CUSTOMER + "WHERE c.id = $1", customer_id)


def customer_body(row: asyncpg.Record) -> dict[str, Any]:
    a: dict[str, Any] = row["attributes"]
    billing_configuration = {
        "invoice_grace_period": None,
        "payment_provider": None,
        "payment_provider_code": None,
        "provider_customer_id": None,
        "sync": None,
        "sync_with_provider": None,
        "document_locale": None,
        "provider_payment_methods": None,
        **a.get("billing_configuration", {}),
    }
    shipping_address = {name: None for name in ADDRESS_FIELDS} | a.get("shipping_address", {})
    return {
        "lago_id": str(row["id"]),
        "sequential_id": row["sequential_id"],
        "slug": f"CUST-{row['sequential_id']:05d}",
        "external_id": row["external_id"],
        **{name: a.get(name) for name in CUSTOMER_TEXT_FIELDS},
        "country": a.get("country"),
        "currency": row["currency"],
        "timezone": row["timezone"],
        "applicable_timezone": row["timezone"] or row["organization_timezone"],
        "account_type": a.get("account_type") or "customer",
        "customer_type": a.get("customer_type"),
        "net_payment_term": a.get("net_payment_term"),
        "finalize_zero_amount_invoice": a.get("finalize_zero_amount_invoice") or "inherit",
        "skip_invoice_custom_sections": bool(a.get("skip_invoice_custom_sections")),
        "billing_configuration": billing_configuration,
        "shipping_address": shipping_address,
        "metadata": a.get("metadata", []),
        "integration_customers": [],
        "taxes": [],
        "applicable_invoice_custom_sections": [],
        **isos(row, "created_at", "updated_at"),
    }
