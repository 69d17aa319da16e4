"""Creating an organization with its first API key (`meterflow create-organization`), and
`PUT /api/v1/organizations`: the organization's own settings.

Of those settings meterflow uses `timezone` (periods of customers without their own) and
`billing_configuration.invoice_grace_period` (the invoicer's default when the customer has
none of its own, 0 included) and `document_number_prefix` (the first part of the numbers
of invoices issued from then on). The others (addresses, default currency, document
numbering, net payment term, email settings, webhooks) are stored and returned as sent;
invoices keep per-customer numbering.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import asyncpg

from meterflow import db
from meterflow.db import Conn
from meterflow.errors import ConfigurationError
from store import records, subscriptions, taxes
from store.taxes import tax_body
from web.auth import key_digest, new_api_key
from web.context import Organization
from web.payload import INVALID, Fields, currency, is_timezone, iso

log = logging.getLogger(__name__)


async def open_organization(
    pool: asyncpg.Pool, name: str, timezone: str
) -> tuple[Organization, str]:
    """Create an organization and its API key; returns both (the key is shown only once).

    The organization's catalog record is written to the outbox in the same transaction, for
    the caller (or the next drain of a running API) to send.
    """
    if not name.strip():
        raise ConfigurationError("an organization needs a non-empty --name")
    if not is_timezone(timezone):
        raise ConfigurationError(f"{timezone!r} is not an IANA timezone (e.g. Europe/Paris)")
    key = new_api_key()
    async with db.unit_of_work(pool) as conn:
        org = await insert_organization(conn, name, timezone, key_digest(key))
        await records.enqueue_organization(conn, await organization_row(conn, org.id))
    return org, key


_TEXT = (
    "webhook_url",
    "address_line1",
    "address_line2",
    "state",
    "zipcode",
    "email",
    "city",
    "legal_name",
    "legal_number",
    "tax_identification_number",
)


_SETTINGS = {
    *_TEXT,
    "webhook_urls",
    "country",
    "default_currency",
    "document_numbering",
    "document_number_prefix",
    "net_payment_term",
    "timezone",
    "email_settings",
    "billing_configuration",
    "finalize_zero_amount_invoice",
}


_BILLING = {"invoice_footer", "invoice_grace_period", "document_locale"}


_COUNTRY = re.compile(r"^[A-Z]{2}$")


_EMAIL_SETTINGS = ("invoice.finalized", "credit_note.created")


def parse_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings sent, checked (raises ValidationFailed); absent ones are not in it."""
    fields = Fields(raw, _SETTINGS)
    given: dict[str, Any] = {name: fields.text(name) for name in _TEXT if fields.has(name)}
    if fields.has("country"):
        country = fields.text("country", max_length=2)
        if country is not None and not _COUNTRY.match(country.upper()):
            fields.add("country", "country_code_invalid")
        given["country"] = country.upper() if country else country
    if fields.has("default_currency"):
        given["default_currency"] = currency(fields, "default_currency", required=True)
    if fields.has("document_numbering"):
        given["document_numbering"] = fields.text(
            "document_numbering", choices=("per_customer", "per_organization")
        )
    if fields.has("document_number_prefix"):
        given["document_number_prefix"] = fields.text("document_number_prefix", max_length=10)
    if fields.has("net_payment_term"):
        given["net_payment_term"] = fields.integer("net_payment_term", minimum=0)
    if fields.has("timezone"):
        given["timezone"] = fields.timezone("timezone")
        if given["timezone"] is None and "timezone" not in fields.errors:
            fields.add("timezone", INVALID)
    if fields.has("finalize_zero_amount_invoice"):
        given["finalize_zero_amount_invoice"] = fields.flag("finalize_zero_amount_invoice")
    if fields.has("webhook_urls"):
        given["webhook_urls"] = fields.strings("webhook_urls")
    if fields.has("email_settings"):
        settings = fields.strings("email_settings")
        if settings is not None and any(s not in _EMAIL_SETTINGS for s in settings):
            fields.add("email_settings", INVALID)
        given["email_settings"] = settings
    billing = fields.mapping("billing_configuration")
    if billing is not None:
        bc = Fields(billing, _BILLING, prefix="billing_configuration.")
        values = {
            "invoice_footer": bc.text("invoice_footer", max_length=600),
            "invoice_grace_period": bc.integer("invoice_grace_period", minimum=0),
            "document_locale": bc.text("document_locale", max_length=16),
        }
        fields.merge(bc.errors)
        given["billing_configuration"] = {k: v for k, v in values.items() if k in billing}
    fields.check()
    return given


def settings_body(row: asyncpg.Record, taxes: list[asyncpg.Record]) -> dict[str, Any]:
    """The organization as Lago's Organization object shows it."""
    a: dict[str, Any] = row["attributes"] or {}
    billing = {
        "invoice_footer": None,
        "invoice_grace_period": 0,
        "document_locale": "en",
        **{k: v for k, v in (a.get("billing_configuration") or {}).items() if v is not None},
    }
    letters = "".join(ch for ch in row["name"].upper() if ch.isalnum())[:3] or "INV"
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "created_at": iso(row["created_at"]),
        "webhook_url": a.get("webhook_url"),
        "webhook_urls": a.get("webhook_urls") or [],
        "country": a.get("country"),
        "default_currency": a.get("default_currency") or "USD",
        **{name: a.get(name) for name in _TEXT if name != "webhook_url"},
        "document_numbering": a.get("document_numbering") or "per_customer",
        "document_number_prefix": a.get("document_number_prefix")
        or f"{letters}-{row['id'].hex[-4:].upper()}",
        "net_payment_term": a.get("net_payment_term") or 0,
        "timezone": row["timezone"],
        "email_settings": a.get("email_settings") or [],
        "billing_configuration": billing,
        "taxes": [tax_body(t) for t in taxes],
        "finalize_zero_amount_invoice": a.get("finalize_zero_amount_invoice", True),
        "events_store": "postgres",
    }


async def insert_organization(
    conn: Conn, name: str, timezone: str, key_digest: bytes
) -> Organization:
    org_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO organizations (id, name, timezone) VALUES ($1, $2, $3)", org_id, name, timezone
    )
    await conn.execute(
        "INSERT INTO api_keys (id, organization_id, key_digest) VALUES ($1, $2, $3)",
        uuid.uuid4(),
        org_id,
        key_digest,
    )
    return Organization(org_id, name, timezone)


async def organization_row(conn: Conn, org: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    sql = "SELECT * FROM organizations WHERE id = $1"
    # NO KEY UPDATE: a plain FOR UPDATE also blocks the foreign-key checks (KEY SHARE) of
    # every insert naming the organization, and an organization update that then waits for
    # a customer row deadlocked with a customer change that was inserting (found by
    # schemathesis: PUT /organizations answered 500).
    row = await conn.fetchrow(sql + (" FOR NO KEY UPDATE" if lock else ""), org)
    assert row is not None
    return row


async def update_organization(
    conn: Conn, org: uuid.UUID, timezone: str, attributes: dict[str, Any]
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE organizations SET timezone = $2, attributes = $3, version = version + 1 "
        "WHERE id = $1 RETURNING *",
        org,
        timezone,
        attributes,
    )
    assert row is not None
    return row


async def bump_customers_on_organization_timezone(conn: Conn, org: uuid.UUID) -> list[uuid.UUID]:
    """New versions of the customers without a timezone of their own (their applicable
    timezone is the organization's); returns their ids."""
    rows = await conn.fetch(
        "UPDATE customers SET version = version + 1, updated_at = now() "
        "WHERE organization_id = $1 AND timezone IS NULL AND deleted_at IS NULL RETURNING id",
        org,
    )
    return [r["id"] for r in rows]


async def live_subscription_ids_on_organization_timezone(
    conn: Conn, org: uuid.UUID
) -> list[uuid.UUID]:
    """Live subscriptions whose customer has no timezone of its own."""
    rows = await conn.fetch(
        "SELECT s.id FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
        "WHERE s.organization_id = $1 AND s.status IN ('active', 'pending') "
        "AND c.timezone IS NULL",
        org,
    )
    return [r["id"] for r in rows]


async def change_settings(conn: Conn, org: uuid.UUID, given: dict[str, Any]) -> dict[str, Any]:
    """Apply `parse_settings`' changes. A new timezone is republished with every customer
    that has none of its own and their live subscriptions (their periods follow it)."""
    current = await organization_row(conn, org, lock=True)
    attributes = {**(current["attributes"] or {}), **given}
    attributes.pop("timezone", None)
    if "billing_configuration" in given:
        attributes["billing_configuration"] = {
            **((current["attributes"] or {}).get("billing_configuration") or {}),
            **given["billing_configuration"],
        }
    timezone = given.get("timezone") or current["timezone"]
    row = await update_organization(conn, org, timezone, attributes)
    await records.enqueue_organization(conn, row)
    if timezone != current["timezone"]:
        for customer_id in await bump_customers_on_organization_timezone(conn, org):
            await records.enqueue_customer(conn, customer_id)
        for subscription_id in await live_subscription_ids_on_organization_timezone(conn, org):
            await subscriptions.bump_subscription(conn, subscription_id)
            await records.enqueue_subscription(conn, subscription_id)
    return settings_body(row, await taxes.organization_taxes(conn, org))
