"""Customers' rules and SQL: create-or-update by external_id, read, list, delete."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import asyncpg

from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model.customers import (
    ADDRESS_FIELDS,
    CUSTOMER_TEXT_FIELDS,
    SELECT_CUSTOMER,
    customer_body,
)
from store import database, records, subscriptions, taxes
from store.taxes import check_tax_codes, tax_body
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, currency, iso

_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


_ALLOWED = {
    *CUSTOMER_TEXT_FIELDS,
    "external_id",
    "country",
    "currency",
    "timezone",
    "account_type",
    "customer_type",
    "net_payment_term",
    "finalize_zero_amount_invoice",
    "billing_configuration",
    "shipping_address",
    "integration_customers",
    "metadata",
    "skip_invoice_custom_sections",
    "invoice_custom_section_codes",
    "tax_codes",
}


_BILLING_CONFIGURATION = {
    "invoice_grace_period",
    "subscription_invoice_issuing_date_anchor",
    "subscription_invoice_issuing_date_adjustment",
    "payment_provider",
    "payment_provider_code",
    "provider_customer_id",
    "sync",
    "sync_with_provider",
    "document_locale",
    "provider_payment_methods",
}


_METADATA = {"id", "key", "value", "display_in_invoice"}


PAYMENT_PROVIDERS = ("stripe", "adyen", "gocardless", "cashfree", "flutterwave", "moneyhash")


def _country(fields: Fields, name: str) -> str | None:
    value = fields.text(name, max_length=2)
    if value is not None and not _COUNTRY.match(value):
        fields.add(name, "country_code_invalid")
        return None
    return value.upper() if value else value


def _billing_configuration(fields: Fields, raw: dict[str, Any]) -> dict[str, Any]:
    bc = Fields(raw, _BILLING_CONFIGURATION, prefix="billing_configuration.")
    out: dict[str, Any] = {
        "invoice_grace_period": bc.integer("invoice_grace_period", minimum=0),
        "subscription_invoice_issuing_date_anchor": bc.text(
            "subscription_invoice_issuing_date_anchor",
            choices=("current_period_end", "next_period_start"),
        ),
        "subscription_invoice_issuing_date_adjustment": bc.text(
            "subscription_invoice_issuing_date_adjustment",
            choices=("align_with_finalization_date", "keep_anchor"),
        ),
        "payment_provider": bc.text("payment_provider", choices=PAYMENT_PROVIDERS),
        "payment_provider_code": bc.text("payment_provider_code"),
        "provider_customer_id": bc.text("provider_customer_id"),
        "sync": bc.flag("sync"),
        "sync_with_provider": bc.flag("sync_with_provider"),
        "document_locale": bc.text("document_locale", max_length=16),
        "provider_payment_methods": bc.strings("provider_payment_methods"),
    }
    fields.merge(bc.errors)
    return {k: v for k, v in out.items() if k in raw}


def _address(fields: Fields, raw: dict[str, Any]) -> dict[str, Any]:
    address = Fields(raw, ADDRESS_FIELDS, prefix="shipping_address.")
    out = {name: address.text(name) for name in ADDRESS_FIELDS if name != "country"}
    out["country"] = _country(address, "country")
    fields.merge(address.errors)
    return {k: v for k, v in out.items() if k in raw}


def _metadata(fields: Fields, raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for _, _, entry in fields.each("metadata", raw, _METADATA):
        key = entry.text("key", required=True)
        value = entry.text("value", required=True)
        display = entry.flag("display_in_invoice")
        out.append(
            {
                "lago_id": str(uuid.uuid4()),
                "key": key,
                "value": value,
                "display_in_invoice": bool(display),
                "created_at": iso(datetime.now(UTC)),
            }
        )
    return out


def parse_customer(
    raw: dict[str, Any], known_tax_codes: Collection[str] = ()
) -> tuple[str, dict[str, Any]]:
    """(external_id, the fields given) of a customer input; raises ValidationFailed.

    `known_tax_codes` are the organization's taxes: `tax_codes` naming another is
    `tax_not_found`. The codes given, if any, come back as `given["tax_codes"]`.
    """
    fields = Fields(raw, _ALLOWED)
    external_id = fields.text("external_id", required=True)
    given: dict[str, Any] = {
        name: fields.text(name) for name in CUSTOMER_TEXT_FIELDS if fields.has(name)
    }
    if fields.has("country"):
        given["country"] = _country(fields, "country")
    if fields.has("currency"):
        given["currency"] = currency(fields, "currency")
    if fields.has("timezone"):
        given["timezone"] = fields.timezone("timezone")
    if fields.has("account_type"):
        given["account_type"] = fields.text("account_type", choices=("customer", "partner"))
    if fields.has("customer_type"):
        given["customer_type"] = fields.text("customer_type", choices=("company", "individual"))
    if fields.has("net_payment_term"):
        given["net_payment_term"] = fields.integer("net_payment_term", minimum=0)
    if fields.has("finalize_zero_amount_invoice"):
        given["finalize_zero_amount_invoice"] = fields.text(
            "finalize_zero_amount_invoice", choices=("inherit", "skip", "finalize")
        )
    if fields.has("skip_invoice_custom_sections"):
        given["skip_invoice_custom_sections"] = fields.flag("skip_invoice_custom_sections")
    billing_configuration = fields.mapping("billing_configuration")
    if billing_configuration is not None:
        given["billing_configuration"] = _billing_configuration(fields, billing_configuration)
    shipping_address = fields.mapping("shipping_address")
    if shipping_address is not None:
        given["shipping_address"] = _address(fields, shipping_address)
    metadata = fields.array("metadata")
    if metadata is not None:
        given["metadata"] = _metadata(fields, metadata)
    fields.array("integration_customers")  # accepted; meterflow has no integrations to sync
    tax_codes = fields.strings("tax_codes")
    if tax_codes is not None:
        if any(code not in known_tax_codes for code in tax_codes):
            fields.add("tax_codes", "tax_not_found")
        given["tax_codes"] = sorted(set(tax_codes))
    # Invoice custom sections do not exist in meterflow: naming one is an error rather
    # than a silently ignored setting.
    if fields.strings("invoice_custom_section_codes"):
        fields.add("invoice_custom_section_codes", "invoice_custom_section_not_found")
    fields.check()
    assert external_id is not None
    return external_id, given


def _columns(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": attributes.get("name"),
        "email": attributes.get("email"),
        "currency": attributes.get("currency"),
        "timezone": attributes.get("timezone"),
        "attributes": attributes,
    }


async def with_taxes(conn: Conn, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customers' bodies with their own taxes (`taxes`), as Lago lists them."""
    found = await taxes.taxes_of(conn, "customer", [uuid.UUID(b["lago_id"]) for b in bodies])
    for body in bodies:
        body["taxes"] = [tax_body(t) for t in found[uuid.UUID(body["lago_id"])]]
    return bodies


async def external_id_lock(conn: Conn, customer_id: uuid.UUID) -> str | None:
    """Why the customer's external ID can no longer change (a plan, coupon, wallet or credits
    were assigned to it), or None while it still can."""
    return await customer_assignment(conn, customer_id)


async def save_customer(
    ctx: IngestContext,
    org: Organization,
    raw: dict[str, Any],
    *,
    customer_id: uuid.UUID | None = None,
    new: bool = False,
) -> dict[str, Any]:
    """Create or update a customer from Lago's input object; returns its API body.

    The API upserts by `external_id`. The console creates (`new`: an external ID in use is
    `value_already_exist`) or edits one customer by `customer_id`, and may change its
    external ID until something is assigned to the customer (`external_id_lock`): then a
    change is refused with `external_id_locked`.
    """
    async with db.unit_of_work(ctx.db) as conn:
        known = await taxes.known_tax_codes(conn, org.id, raw.get("tax_codes"))
        check_tax_codes(raw.get("tax_codes"), known)
        external_id, given = parse_customer(raw, known)
        tax_codes: list[str] | None = given.pop("tax_codes", None)
        await database.claim_name(conn, org.id, "customer", external_id)
        if customer_id is not None:
            await _rename(conn, org, customer_id, external_id)
        existing = await customer_by_external_id(conn, org.id, external_id, lock=True)
        if new and existing is not None:
            raise ValidationFailed({"external_id": ["value_already_exist"]})
        if existing is None:
            customer_id = await insert_customer(conn, org.id, external_id, _columns(given))
            timezone_changed = False
        else:
            customer_id = existing["id"]
            attributes = {**existing["attributes"], **given}
            if "billing_configuration" in given:
                attributes["billing_configuration"] = {
                    **existing["attributes"].get("billing_configuration", {}),
                    **given["billing_configuration"],
                }
            await update_customer(conn, customer_id, _columns(attributes))
            timezone_changed = attributes.get("timezone") != existing["timezone"]
        if tax_codes is not None:
            found = await taxes.taxes_by_codes(conn, org.id, tax_codes)
            await taxes.replace_taxes_of(conn, "customer", customer_id, [t["id"] for t in found])
        body = await records.enqueue_customer(conn, customer_id)
        await with_taxes(conn, [body])
        webhook = "customer.created" if existing is None else "customer.updated"
        await webhook_outbox.emit(conn, org.id, webhook, customer_id, body)
        if timezone_changed:
            # A subscription's record carries its applicable timezone: republish them.
            for subscription_id in await subscriptions.live_subscription_ids(
                conn, customer_id=customer_id
            ):
                await subscriptions.bump_subscription(conn, subscription_id)
                await records.enqueue_subscription(conn, subscription_id)
    await ctx.catalog.drain_quietly()
    return body


async def _rename(conn: Conn, org: Organization, customer_id: uuid.UUID, external_id: str) -> None:
    """Give the customer `external_id` (the caller holds its name's claim), if it may change."""
    current = await customer_by_lago_id(conn, org.id, customer_id, lock=True)
    if current is None:
        raise NotFound("customer")
    if current["external_id"] == external_id:
        return
    if await external_id_lock(conn, customer_id) is not None:
        raise ValidationFailed({"external_id": ["external_id_locked"]})
    if await customer_by_external_id(conn, org.id, external_id) is not None:
        raise ValidationFailed({"external_id": ["value_already_exist"]})
    await rename_customer(conn, customer_id, external_id)


async def delete_customer(
    ctx: IngestContext, org: Organization, external_id: str
) -> dict[str, Any]:
    """Delete the customer; its live subscriptions, applied coupons and wallets are
    terminated with it, as in Lago. The final invoices of those subscriptions, issued when
    their periods close, therefore use no coupon and no prepaid credit."""
    async with db.unit_of_work(ctx.db) as conn:
        row = await customer_by_external_id(conn, org.id, external_id, lock=True)
        if row is None:
            raise NotFound("customer")
        for subscription_id in await subscriptions.live_subscription_ids(
            conn, customer_id=row["id"]
        ):
            await subscriptions.terminate(conn, subscription_id)
        # Its applied coupons and wallets end with it, as in Lago.
        await database.terminate_active(conn, "applied_coupons", "customer_id", row["id"])
        await database.terminate_active(conn, "wallets", "customer_id", row["id"])
        await mark_customer_deleted(conn, row["id"])
        body = await records.enqueue_customer(conn, row["id"])
    await ctx.catalog.drain_quietly()
    return body


async def customer_by_external_id(
    conn: Conn, org: uuid.UUID, external_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = (
        SELECT_CUSTOMER
        + "WHERE c.organization_id = $1 AND c.external_id = $2 AND deleted_at IS NULL"
    )
    return await conn.fetchrow(sql + (" FOR UPDATE OF c" if lock else ""), org, external_id)


async def insert_customer(
    conn: Conn, org: uuid.UUID, external_id: str, columns: dict[str, Any]
) -> uuid.UUID:
    customer_id = uuid.uuid4()
    # Serialise sequential ids per organization (two concurrent creates must not share one).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(org))
    await conn.execute(
        "INSERT INTO customers (id, organization_id, external_id, sequential_id, name, email, "
        "currency, timezone, attributes) VALUES ($1, $2, $3, (SELECT coalesce(max(sequential_id)"
        ", 0) + 1 FROM customers WHERE organization_id = $2), $4, $5, $6, $7, $8)",
        customer_id,
        org,
        external_id,
        columns["name"],
        columns["email"],
        columns["currency"],
        columns["timezone"],
        columns["attributes"],
    )
    return customer_id


_UPDATED = ("name", "email", "currency", "timezone", "attributes")


async def update_customer(conn: Conn, customer_id: uuid.UUID, columns: dict[str, Any]) -> None:
    sql = database.update_row("customers", _UPDATED, versioned=True)
    await conn.execute(sql, customer_id, *database.values(columns, _UPDATED))


async def mark_customer_deleted(conn: Conn, customer_id: uuid.UUID) -> None:
    await database.soft_delete(conn, "customers", customer_id, versioned=True)


async def customer_by_lago_id(
    conn: Conn, org: uuid.UUID, customer_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = SELECT_CUSTOMER + "WHERE c.organization_id = $1 AND c.id = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE OF c" if lock else ""), org, customer_id)


async def rename_customer(conn: Conn, customer_id: uuid.UUID, external_id: str) -> None:
    await conn.execute(
        "UPDATE customers SET external_id = $2, version = version + 1, updated_at = now() "
        "WHERE id = $1",
        customer_id,
        external_id,
    )


async def customer_assignment(conn: Conn, customer_id: uuid.UUID) -> str | None:
    """The first kind of object assigned to the customer (`subscription`, `coupon`,
    `wallet` or `invoice`, ended ones included), or None when nothing is."""
    found: str | None = await conn.fetchval(
        "SELECT CASE "
        "WHEN EXISTS (SELECT 1 FROM subscriptions WHERE customer_id = $1) THEN 'subscription' "
        "WHEN EXISTS (SELECT 1 FROM applied_coupons WHERE customer_id = $1) THEN 'coupon' "
        "WHEN EXISTS (SELECT 1 FROM wallets WHERE customer_id = $1) THEN 'wallet' "
        "WHEN EXISTS (SELECT 1 FROM invoices WHERE customer_id = $1) THEN 'invoice' END",
        customer_id,
    )
    return found


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_customers(
    conn: Conn, org: uuid.UUID, limit: int, offset: int, search_term: str | None = None
) -> tuple[list[asyncpg.Record], int]:
    """A page of live customers, newest first; `search_term` (Lago's) keeps those whose
    name, first or last name, legal name, external id or email contains it."""
    where = "WHERE c.organization_id = $1 AND c.deleted_at IS NULL "
    args: list[Any] = [org]
    if search_term:
        # search_text: those fields lowercased in one column (migration 0021)
        where += "AND c.search_text LIKE $2 "
        args.append(_like(search_term.lower()))
    order = "c.created_at DESC, c.id"
    return await db.fetch_page(
        conn, SELECT_CUSTOMER, where, args, order=order, limit=limit, offset=offset
    )


async def customer_page(
    conn: Conn, org: uuid.UUID, filters: database.Filters, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of customers (`search_term` filters them) with their taxes, as the API shows
    them, and how many match."""
    rows, total = await list_customers(conn, org, limit, offset, filters.get("search_term"))
    return await with_taxes(conn, [customer_body(r) for r in rows]), total


async def check_customer(conn: Conn, org: uuid.UUID, external_id: str | None) -> None:
    """`customer_not_found` when the path names a customer the organization does not have."""
    if external_id is not None and await customer_by_external_id(conn, org, external_id) is None:
        raise NotFound("customer")


async def check_filtered_customer(conn: Conn, org: uuid.UUID, filters: database.Filters) -> None:
    """`check_customer` of the customer a list's `external_customer_id` filter names."""
    await check_customer(conn, org, filters.get("external_customer_id"))
