"""Invoices as the API shows them (with their fees, customer and subscription), read the
same way by the invoices API, the credit notes, the webhooks and the console."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from billing.money import minor_units, round_cents
from meterflow.db import Conn
from read_model.customers import customer_body, customer_by_id
from read_model.subscriptions import subscription_body, subscription_by_id
from web.errors import NotFound
from web.payload import iso, isos, object_id

STATUSES = ("draft", "finalized", "voided", "failed", "pending")


PAYMENT_STATUSES = ("pending", "succeeded", "failed")


# Lago's invoice version 4: sub_total_excluding_taxes = fees - coupons.
VERSION_NUMBER = 4


def _number(value: Decimal) -> str:
    return str(value)


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _tax_terms(tax: Mapping[str, Any]) -> dict[str, Any]:
    """The tax an applied tax (of a fee or of the invoice) names, as the invoice applied it."""
    return {
        "lago_tax_id": tax["lago_tax_id"],
        "tax_name": tax["tax_name"],
        "tax_code": tax["tax_code"],
        "tax_rate": float(Decimal(tax["tax_rate"])),
        "tax_description": tax["tax_description"],
    }


def _fee_applied_taxes(fee: asyncpg.Record, invoice: asyncpg.Record) -> list[dict[str, Any]]:
    """The fee's taxes in Lago's shape: its amounts by tax code, named and rated from the
    invoice's snapshot of the taxes it applied."""
    own: dict[str, Any] = fee["applied_taxes"] or {}
    out = []
    for tax in invoice["applied_taxes"]:
        mine = own.get(tax["tax_code"])
        if mine is None:
            continue
        out.append(
            {
                "lago_id": mine["lago_id"],
                "lago_fee_id": str(fee["id"]),
                **_tax_terms(tax),
                "amount_cents": mine["amount_cents"],
                "amount_currency": fee["currency"],
                "created_at": iso(fee["created_at"]),
            }
        )
    return out


def fee_body(
    fee: asyncpg.Record, invoice: asyncpg.Record, external_ids: dict[str, str | None]
) -> dict[str, Any]:
    item_id, item_type = {
        "charge": (fee["billable_metric_id"], "BillableMetric"),
        "add_on": (fee["add_on_id"], "AddOn"),
    }.get(fee["fee_type"], (invoice["subscription_id"], "Subscription"))
    coupons: Decimal = fee["precise_coupons_amount_cents"]
    taxes_precise: Decimal = fee["taxes_precise_amount_cents"]
    exponent = minor_units(fee["currency"])
    units: Decimal = fee["units"]
    precise: Decimal = fee["precise_amount"]
    unit_amount = precise / units if units else Decimal(0)
    return {
        "lago_id": str(fee["id"]),
        "lago_charge_id": str(fee["charge_id"]) if fee["charge_id"] else None,
        "lago_charge_filter_id": None,
        "lago_fixed_charge_id": None,
        "lago_invoice_id": str(invoice["id"]),
        "lago_true_up_fee_id": None,
        "lago_true_up_parent_fee_id": None,
        "lago_subscription_id": _text(invoice["subscription_id"]),
        "lago_customer_id": str(invoice["customer_id"]),
        "external_customer_id": external_ids["customer"],
        "external_subscription_id": external_ids["subscription"],
        "amount_cents": fee["amount_cents"],
        "precise_amount": _number(precise),
        "precise_total_amount": _number(precise),
        "amount_currency": fee["currency"],
        "taxes_amount_cents": fee["taxes_amount_cents"],
        "taxes_precise_amount": _number(taxes_precise.scaleb(-exponent)),
        "taxes_rate": float(fee["taxes_rate"]),
        "units": _number(units),
        "precise_unit_amount": _number(unit_amount),
        "total_aggregated_units": _number(units),
        "total_amount_cents": fee["amount_cents"] + fee["taxes_amount_cents"],
        "total_amount_currency": fee["currency"],
        "events_count": fee["events_count"],
        "pay_in_advance": fee["pay_in_advance"],
        "invoiceable": fee["invoiceable"],
        **isos(fee, "from_date", "to_date"),
        "payment_status": invoice["payment_status"],
        "created_at": iso(fee["created_at"]),
        "succeeded_at": None,
        "failed_at": None,
        "refunded_at": None,
        "event_transaction_id": None,
        "description": fee["description"],
        "precise_coupons_amount_cents": _number(coupons),
        "sub_total_excluding_taxes_amount_cents": fee["amount_cents"],
        "sub_total_excluding_taxes_precise_amount_cents": _number(precise.scaleb(exponent)),
        "amount_details": fee["amount_details"],
        "self_billed": False,
        "is_late_events_adjustment": fee["is_adjustment"],
        "item": {
            "type": fee["fee_type"],
            "code": fee["item_code"],
            "name": fee["item_name"],
            "description": fee["description"],
            "invoice_display_name": fee["invoice_display_name"] or fee["item_name"],
            "filter_invoice_display_name": None,
            "filters": None,
            "lago_item_id": _text(item_id),
            "item_type": item_type,
            "grouped_by": {},
        },
        "applied_taxes": _fee_applied_taxes(fee, invoice),
    }


def _invoice_applied_taxes(invoice: asyncpg.Record) -> list[dict[str, Any]]:
    return [
        {
            "lago_id": tax["lago_id"],
            "lago_invoice_id": str(invoice["id"]),
            **_tax_terms(tax),
            "amount_cents": tax["amount_cents"],
            "amount_currency": tax["amount_currency"],
            "fees_amount_cents": round_cents(tax["taxable_base_amount_cents"]),
            "taxable_base_amount_cents": round_cents(tax["taxable_base_amount_cents"]),
            "created_at": iso(invoice["created_at"]),
        }
        for tax in invoice["applied_taxes"]
    ]


def _credits(invoice: asyncpg.Record) -> list[dict[str, Any]]:
    """The coupons the invoice used, as Lago's credits (`before_taxes`)."""
    return [
        {
            **credit,
            "invoice": {"lago_id": str(invoice["id"]), "payment_status": invoice["payment_status"]},
        }
        for credit in invoice["credits"]
    ]


# `amount_due` in SQL, over the invoices row named `i`.
AMOUNT_DUE_SQL = "(i.total_amount_cents - i.offset_amount_cents - i.paid_amount_cents)"


def amount_due(invoice: asyncpg.Record) -> int:
    """What the invoice still asks of the customer: its total less its credit notes' offsets
    and the payments recorded against it."""
    return int(
        invoice["total_amount_cents"]
        - invoice["offset_amount_cents"]
        - invoice["paid_amount_cents"]
    )


def invoice_body(
    invoice: asyncpg.Record,
    customer: asyncpg.Record,
    *,
    subscription: asyncpg.Record | None = None,
    fees: list[asyncpg.Record] | None = None,
) -> dict[str, Any]:
    """The invoice as Lago shows it; `subscription` and `fees` make it the extended one."""
    attributes: dict[str, Any] = customer["attributes"] or {}
    net_payment_term = attributes.get("net_payment_term") or 0
    issuing: date = invoice["issuing_date"]
    total = invoice["total_amount_cents"]
    body: dict[str, Any] = {
        "lago_id": str(invoice["id"]),
        "billing_entity_code": None,
        "sequential_id": invoice["sequential_id"],
        "number": invoice["number"],
        "purchase_order_number": None,
        "issuing_date": issuing.isoformat(),
        "payment_dispute_lost_at": iso(invoice["payment_dispute_lost_at"]),
        "payment_due_date": (issuing + timedelta(days=net_payment_term)).isoformat(),
        "payment_overdue": invoice["status"] == "finalized"
        and invoice["payment_status"] in ("pending", "failed")
        and issuing + timedelta(days=net_payment_term) < datetime.now(UTC).date(),
        "net_payment_term": net_payment_term,
        "invoice_type": invoice["invoice_type"],
        "status": invoice["status"],
        "payment_status": invoice["payment_status"],
        "currency": invoice["currency"],
        "fees_amount_cents": invoice["fees_amount_cents"],
        "coupons_amount_cents": invoice["coupons_amount_cents"],
        "credit_notes_amount_cents": invoice["credit_notes_amount_cents"],
        "sub_total_excluding_taxes_amount_cents": invoice["sub_total_excluding_taxes_amount_cents"],
        "taxes_amount_cents": invoice["taxes_amount_cents"],
        "sub_total_including_taxes_amount_cents": invoice["sub_total_including_taxes_amount_cents"],
        "prepaid_credit_amount_cents": invoice["prepaid_credit_amount_cents"],
        "prepaid_granted_credit_amount_cents": invoice["prepaid_granted_credit_amount_cents"],
        "prepaid_purchased_credit_amount_cents": invoice["prepaid_purchased_credit_amount_cents"],
        "progressive_billing_credit_amount_cents": 0,
        "total_amount_cents": total,
        "total_due_amount_cents": amount_due(invoice),
        "total_paid_amount_cents": invoice["paid_amount_cents"],
        "total_offsetted_credit_note_amount_cents": invoice["offset_amount_cents"],
        "version_number": VERSION_NUMBER,
        "self_billed": False,
        "voided_at": iso(invoice["voided_at"]),
        "file_url": None,
        "xml_url": None,
        "web_url": None,
        **isos(invoice, "created_at", "updated_at"),
        "customer": customer_body(customer),
        "metadata": invoice["metadata"],
        "applied_taxes": _invoice_applied_taxes(invoice),
        "applied_invoice_custom_sections": [],
        "applied_usage_thresholds": [],
        "billing_periods": invoice["billing_periods"],
    }
    if fees is not None:
        external_ids = {
            "customer": customer["external_id"],
            "subscription": None if subscription is None else subscription["external_id"],
        }
        body["subscriptions"] = [] if subscription is None else [subscription_body(subscription)]
        body["fees"] = [fee_body(f, invoice, external_ids) for f in fees]
        body["credits"] = _credits(invoice)
    return body


async def owned_row(
    conn: Conn, table: str, kind: str, org: uuid.UUID, raw_id: str, *, lock: bool = False
) -> asyncpg.Record:
    """The organization's row of `table` whose id is `raw_id` (locked until the transaction
    ends when asked), or `{kind}_not_found`, a malformed id included."""
    row_id = object_id(raw_id, kind)
    sql = f"SELECT * FROM {table} WHERE id = $1 AND organization_id = $2"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), row_id, org)
    if row is None:
        raise NotFound(kind)
    return row


async def invoice_row(
    conn: Conn, org: uuid.UUID, raw_id: str, *, lock: bool = False
) -> asyncpg.Record:
    return await owned_row(conn, "invoices", "invoice", org, raw_id, lock=lock)


async def extended_body(conn: Conn, invoice: asyncpg.Record) -> dict[str, Any]:
    """The invoice with its customer, subscription and fees, as `GET /invoices/{id}`."""
    customer = await customer_by_id(conn, invoice["customer_id"])
    subscription = (
        None
        if invoice["subscription_id"] is None
        else await subscription_by_id(conn, invoice["subscription_id"])
    )
    fees = await conn.fetch(
        "SELECT * FROM fees WHERE invoice_id = $1 ORDER BY position", invoice["id"]
    )
    return invoice_body(invoice, customer, subscription=subscription, fees=list(fees))


InvoiceFilters = tuple[
    str | None, list[str] | None, list[str] | None, date | None, date | None, str | None, str | None
]


async def list_invoices(
    conn: Conn, org: uuid.UUID, filters: InvoiceFilters, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of invoices, latest issued first, and how many match. `filters`: external
    customer id, statuses, payment statuses, issued from, issued to, invoice type, currency
    (None: any)."""
    where = (
        "WHERE i.organization_id = $1 AND ($2::text IS NULL OR c.external_id = $2) "
        "AND ($3::text[] IS NULL OR i.status = ANY($3::text[])) "
        "AND ($4::text[] IS NULL OR i.payment_status = ANY($4::text[])) "
        "AND ($5::date IS NULL OR i.issuing_date >= $5) "
        "AND ($6::date IS NULL OR i.issuing_date <= $6) "
        "AND ($7::text IS NULL OR i.invoice_type = $7) "
        "AND ($8::text IS NULL OR i.currency = $8) "
    )
    joined = "FROM invoices i JOIN customers c ON c.id = i.customer_id "
    total = await conn.fetchval("SELECT count(*) " + joined + where, org, *filters)
    rows = await conn.fetch(
        "SELECT i.* "
        + joined
        + where
        + "ORDER BY i.issuing_date DESC, i.created_at DESC, i.id LIMIT $9 OFFSET $10",
        org,
        *filters,
        limit,
        offset,
    )
    by_id = {}
    for customer_id in {r["customer_id"] for r in rows}:
        by_id[customer_id] = await customer_by_id(conn, customer_id)
    return [invoice_body(r, by_id[r["customer_id"]]) for r in rows], int(total)


async def invoice_of(conn: Conn, org: uuid.UUID, lago_id: str) -> dict[str, Any]:
    """The invoice with its subscription and fees, as `GET /api/v1/invoices/{id}` shows it."""
    return await extended_body(conn, await invoice_row(conn, org, lago_id))
