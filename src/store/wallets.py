"""Wallets' rules and SQL: prepaid credits (their transactions: `store.wallet_transactions`).

A wallet holds credits worth `rate_amount` each in its currency; its balance is kept in
minor units (`billing.wallet`). Choices where Lago depends on what meterflow lacks:

- Paid credits are settled at once. Lago invoices a purchase and credits the wallet when
  that invoice is paid; meterflow has no payments, so a purchase is taken as paid (its
  transaction is `purchased`, `settled`). Granted credits are settled at once, as in Lago.
- Prepaid credits pay invoices when they are finalized (at once for an invoice without
  grace period, else `read_model.drafts.finalize_draft`): active, unexpired wallets in the
  invoice's currency, by priority (1 first) then age, up to the total after taxes; within
  a wallet its granted credits go first (Lago's order at equal priority), which the
  invoice's `prepaid_granted_credit_amount_cents` and `..._purchased_...` show. The
  wallet and the invoice change in one transaction; each consumption is an outbound
  `invoiced` transaction naming its invoice. Voided credits leave the granted part first.
- The ongoing balance is the balance: current usage is not deducted in advance.
- Not supported (refused when given): recurring top-up rules, `applies_to` limits, paid
  top-up limits. Terminating a wallet leaves its credits unused, as in Lago.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from billing.wallet import cents_to_credits
from meterflow import db
from meterflow.db import Conn
from store import customers, database, wallet_transactions
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, Fields, currency, iso, isos

WALLET_FIELDS = {
    "external_customer_id",
    "rate_amount",
    "name",
    "code",
    "priority",
    "paid_credits",
    "granted_credits",
    "expiration_at",
    "currency",
    "recurring_transaction_rules",
    "transaction_metadata",
    "transaction_name",
    "applies_to",
    "invoice_requires_successful_payment",
    "paid_top_up_max_amount_cents",
    "paid_top_up_min_amount_cents",
    "ignore_paid_top_up_limits_on_creation",
    "metadata",
    "payment_method",
    "invoice_custom_section",
    "billing_entity_code",
    "purchase_order_number",
}


EDITABLE = ("name", "code", "priority", "expiration_at", "metadata")


MAX_AMOUNT = Decimal(10**15)


def credits_text(value: Decimal) -> str:
    return str(value.normalize() + Decimal("0.0"))


def is_expired(row: asyncpg.Record, now: datetime) -> bool:
    at: datetime | None = row["expiration_at"]
    return at is not None and at <= now


def wallet_body(row: asyncpg.Record) -> dict[str, Any]:
    rate: Decimal = row["rate_amount"]
    cur: str = row["currency"]
    balance = cents_to_credits(row["balance_cents"], rate, cur)
    attributes: dict[str, Any] = row["attributes"] or {}
    expired = is_expired(row, datetime.now(UTC))
    return {
        "lago_id": str(row["id"]),
        "lago_customer_id": str(row["customer_id"]),
        "external_customer_id": row["external_customer_id"],
        "billing_entity_code": None,
        "status": "terminated" if expired else row["status"],
        "currency": cur,
        "name": row["name"],
        "code": row["code"],
        "priority": row["priority"],
        "rate_amount": credits_text(rate),
        "credits_balance": credits_text(balance),
        "balance_cents": row["balance_cents"],
        "consumed_credits": credits_text(cents_to_credits(row["consumed_amount_cents"], rate, cur)),
        **isos(row, "created_at", "expiration_at"),
        "last_balance_sync_at": iso(row["updated_at"]),
        "last_consumed_credit_at": iso(row["last_consumed_credit_at"]),
        "terminated_at": iso(row["terminated_at"] or (row["expiration_at"] if expired else None)),
        "invoice_requires_successful_payment": False,
        "applies_to": {"fee_types": [], "billable_metric_codes": []},
        "recurring_transaction_rules": [],
        "ongoing_balance_cents": row["balance_cents"],
        "ongoing_usage_balance_cents": 0,
        "credits_ongoing_balance": credits_text(balance),
        "credits_ongoing_usage_balance": "0.0",
        "paid_top_up_min_amount_cents": None,
        "paid_top_up_max_amount_cents": None,
        "applied_invoice_custom_sections": [],
        "payment_method": None,
        "purchase_order_number": None,
        "metadata": attributes.get("metadata"),
    }


def parse_metadata(fields: Fields, name: str) -> list[dict[str, str]] | None:
    items = fields.array(name)
    if items is None:
        return None
    if not all(
        isinstance(i, dict)
        and set(i) <= {"key", "value"}
        and all(isinstance(v, str) for v in i.values())
        for i in items
    ):
        fields.add(name, INVALID)
        return None
    return items


def refuse_unsupported(fields: Fields) -> None:
    if fields.array("recurring_transaction_rules"):
        fields.add("recurring_transaction_rules", "not_supported")
    applies_to = fields.mapping("applies_to")
    if applies_to and any(applies_to.get(k) for k in ("fee_types", "billable_metric_codes")):
        fields.add("applies_to", "not_supported")
    for name in ("paid_top_up_max_amount_cents", "paid_top_up_min_amount_cents"):
        if fields.integer(name, minimum=0) is not None:
            fields.add(name, "not_supported")


async def create_wallet(
    ctx: IngestContext, org: Organization, raw: dict[str, Any], external_customer_id: str | None
) -> dict[str, Any]:
    """Open a wallet from Lago's input object (for `external_customer_id`, else the one the
    object names) with its first paid and granted credits; returns its API body."""
    fields = Fields(raw, WALLET_FIELDS)
    given_customer = fields.text("external_customer_id", required=external_customer_id is None)
    external_customer_id = external_customer_id or given_customer
    rate = fields.decimal("rate_amount", low=Decimal(0), high=MAX_AMOUNT, low_open=True)
    if rate is None and "rate_amount" not in fields.errors:
        fields.add("rate_amount", "value_is_mandatory")
    columns: dict[str, Any] = {
        "name": fields.text("name"),
        "code": fields.text("code"),
        "priority": fields.integer("priority", minimum=1),
        "currency": currency(fields, "currency", required=True),
        "rate_amount": rate,
        "expiration_at": fields.instant("expiration_at"),
        "attributes": {"metadata": fields.mapping("metadata")},
    }
    if columns["priority"] is not None and columns["priority"] > 50:
        fields.add("priority", INVALID)
    credits = {
        k: fields.decimal(k, low=Decimal(0), high=MAX_AMOUNT)
        for k in ("paid_credits", "granted_credits")
    }
    name = fields.text("transaction_name")
    metadata = parse_metadata(fields, "transaction_metadata")
    refuse_unsupported(fields)
    at = columns["expiration_at"]
    if at is not None and at <= datetime.now(UTC):
        fields.add("expiration_at", "invalid_date")
    fields.check()
    assert external_customer_id is not None
    async with db.unit_of_work(ctx.db) as conn:
        customer = await customers.customer_by_external_id(
            conn, org.id, external_customer_id, lock=True
        )
        if customer is None:
            raise NotFound("customer")
        if customer["currency"] is not None and customer["currency"] != columns["currency"]:
            raise ValidationFailed({"currency": ["currencies_does_not_match"]})
        code = columns["code"]
        if code is not None:
            existing = await wallet_by_code(conn, customer["id"], code)
            if existing is not None and existing["status"] == "active":
                raise ValidationFailed({"code": ["value_already_exist"]})
        wallet_id = await insert_wallet(
            conn,
            org.id,
            {**columns, "customer_id": customer["id"], "priority": columns["priority"] or 50},
        )
        wallet = await wallet_by_id(conn, org.id, wallet_id)
        assert wallet is not None
        await wallet_transactions.settle_credits(conn, wallet, credits, name, metadata)
        wallet = await wallet_by_id(conn, org.id, wallet_id)
        assert wallet is not None
    return wallet_body(wallet)


def parse_update(raw: dict[str, Any]) -> tuple[Fields, dict[str, Any]]:
    """The fields an update names and their values: Lago's editable ones (name, code,
    priority, expiry, metadata); raises ValidationFailed naming every bad field."""
    fields = Fields(raw, WALLET_FIELDS)
    given: dict[str, Any] = {
        "name": fields.text("name"),
        "code": fields.text("code"),
        "priority": fields.integer("priority", minimum=1),
        "expiration_at": fields.instant("expiration_at"),
        "metadata": fields.mapping("metadata"),
    }
    if given["priority"] is not None and given["priority"] > 50:
        fields.add("priority", INVALID)
    refuse_unsupported(fields)
    for name in WALLET_FIELDS - set(EDITABLE):
        if fields.raw.get(name) is not None and name not in (
            "applies_to",
            "recurring_transaction_rules",
            "paid_top_up_max_amount_cents",
            "paid_top_up_min_amount_cents",
        ):
            fields.add(name, "not_editable")
    fields.check()
    return fields, given


async def change_wallet(
    conn: Conn, org: uuid.UUID, wallet: asyncpg.Record, fields: Fields, given: dict[str, Any]
) -> dict[str, Any]:
    """Apply `parse_update`'s changes to an active wallet (locked)."""
    if wallet["status"] != "active":
        raise ValidationFailed({"wallet": ["wallet_not_active"]})
    attributes = dict(wallet["attributes"] or {})
    if fields.has("metadata"):
        attributes["metadata"] = given["metadata"]
    columns = {k: wallet[k] for k in ("name", "code", "priority", "expiration_at")}
    columns.update({k: v for k, v in given.items() if fields.has(k) and k != "metadata"})
    columns["priority"] = columns["priority"] or 50
    columns["attributes"] = attributes
    await update_wallet(conn, wallet["id"], columns)
    return await wallet_of(conn, org, wallet["id"])


async def change_metadata(
    conn: Conn,
    wallet: asyncpg.Record,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """Store `change(current)` as the wallet's (locked, active) metadata; returns it."""
    if wallet["status"] != "active":
        raise ValidationFailed({"wallet": ["wallet_not_active"]})
    attributes = dict(wallet["attributes"] or {})
    attributes["metadata"] = change(dict(attributes.get("metadata") or {}))
    await conn.execute(
        "UPDATE wallets SET attributes = $2, updated_at = now() WHERE id = $1",
        wallet["id"],
        attributes,
    )
    result: dict[str, Any] | None = attributes["metadata"]
    return result


async def end_wallet(conn: Conn, org: uuid.UUID, wallet: asyncpg.Record) -> dict[str, Any]:
    """Terminate the wallet (locked): no invoice takes its credits any more."""
    await terminate_wallet(conn, wallet["id"])
    return await wallet_of(conn, org, wallet["id"])


async def wallet_of(conn: Conn, org: uuid.UUID, wallet_id: uuid.UUID) -> dict[str, Any]:
    row = await wallet_by_id(conn, org, wallet_id)
    assert row is not None
    return wallet_body(row)


_SELECT_WALLET = (
    "SELECT w.*, c.external_id AS external_customer_id FROM wallets w "
    "JOIN customers c ON c.id = w.customer_id "
)


async def wallet_by_id(
    conn: Conn, org: uuid.UUID, wallet_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = _SELECT_WALLET + "WHERE w.organization_id = $1 AND w.id = $2"
    return await conn.fetchrow(sql + (" FOR UPDATE OF w" if lock else ""), org, wallet_id)


async def wallet_by_code(
    conn: Conn, customer_id: uuid.UUID, code: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The customer's wallet with this code: the active one, else the latest."""
    sql = (
        _SELECT_WALLET + "WHERE w.customer_id = $1 AND w.code = $2 "
        "ORDER BY (w.status = 'active') DESC, w.created_at DESC LIMIT 1"
    )
    return await conn.fetchrow(sql + (" FOR UPDATE OF w" if lock else ""), customer_id, code)


_CREATED = (
    "customer_id",
    "name",
    "code",
    "currency",
    "rate_amount",
    "priority",
    "expiration_at",
    "attributes",
)


_UPDATED = ("name", "code", "priority", "expiration_at", "attributes")


async def insert_wallet(conn: Conn, org: uuid.UUID, columns: dict[str, Any]) -> uuid.UUID:
    return await database.insert_new(conn, "wallets", org, _CREATED, columns)


async def update_wallet(conn: Conn, wallet_id: uuid.UUID, columns: dict[str, Any]) -> None:
    sql = database.update_row("wallets", _UPDATED, versioned=False)
    await conn.execute(sql, wallet_id, *database.values(columns, _UPDATED))


async def terminate_wallet(conn: Conn, wallet_id: uuid.UUID) -> None:
    await database.terminate_active(conn, "wallets", "id", wallet_id)


WALLETS = database.Listing(
    _SELECT_WALLET,
    "w.organization_id = {} AND c.deleted_at IS NULL",
    {"external_customer_id": "c.external_id = {}", "currency": "w.currency = {}"},
    "w.created_at DESC, w.id",
)

# A page of wallets (of the customer `external_customer_id` names, if any, who must exist)
# as the API shows them, and how many match.
list_wallets = database.pager(
    WALLETS, database.each(wallet_body), check=customers.check_filtered_customer
)
