"""One-off invoices' rules and SQL (`POST /api/v1/invoices`): a one-off invoice of add-on fees,
finalized at once, numbered in the customer's invoice sequence, taxed as other fees are (the fee's
`tax_codes`, else the add-on's taxes, else the customer's, else the organization's defaults), and
paid first by the customer's available credit notes. Written with its fees and its
`invoice.one_off_created` webhook in one transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from billing.credit_notes import available_cents, split_credit
from billing.invoice import FeeKind
from billing.invoice_terms import PricedFee, TaxTerms, invoice_totals
from billing.money import minor_units, round_cents
from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model import credit_notes
from read_model.invoice_rows import applied_taxes, document_prefix, fee_taxes
from read_model.invoices import extended_body
from store import customers, organizations, taxes
from store.add_ons import add_on
from web.context import IngestContext, Organization
from web.errors import NotFound, ValidationFailed
from web.payload import INVALID, Fields, currency

_INVOICE = {
    "external_customer_id",
    "currency",
    "fees",
    "billing_entity_code",
    "invoice_custom_section",
    "payment_method",
    "purchase_order_number",
}


_FEE = {
    "add_on_code",
    "invoice_display_name",
    "unit_amount_cents",
    "units",
    "description",
    "from_datetime",
    "to_datetime",
    "tax_codes",
    "skip_psp",
}


_MAX_UNITS = Decimal(10) ** 12


# One fee's amount at most (2^53 cents): the sum of a hundred such fees fits a bigint.
_MAX_FEE_CENTS = 2**53


_MAX_FEES = 100


def _tax_terms(rows: list[asyncpg.Record]) -> tuple[TaxTerms, ...]:
    return tuple(
        TaxTerms(str(t["id"]), t["code"], t["name"], t["rate"], t["description"]) for t in rows
    )


def _parse_fee(fields: Fields, i: int, raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        fields.add(f"fees.{i}", INVALID)
        return None
    fee = Fields(raw, _FEE, prefix=f"fees.{i}.")
    parsed = {
        "add_on_code": fee.text("add_on_code", required=True),
        "invoice_display_name": fee.text("invoice_display_name"),
        "unit_amount_cents": fee.integer("unit_amount_cents", minimum=0),
        "units": fee.decimal("units", low=Decimal(0), high=_MAX_UNITS, low_open=True),
        "description": fee.text("description", max_length=10_000),
        "from_datetime": fee.instant("from_datetime"),
        "to_datetime": fee.instant("to_datetime"),
        "tax_codes": fee.strings("tax_codes"),
    }
    fee.flag("skip_psp")
    fields.merge(fee.errors)
    return parsed


async def _fee_taxes_terms(
    conn: Conn,
    org: uuid.UUID,
    customer_id: uuid.UUID,
    add_on_id: uuid.UUID,
    codes: list[str] | None,
) -> tuple[TaxTerms, ...]:
    if codes is not None:
        known = await taxes.taxes_by_codes(conn, org, sorted(set(codes)))
        if len(known) != len(set(codes)):
            raise NotFound("tax")
        return _tax_terms(known)
    for link, owner in (("add_on", add_on_id), ("customer", customer_id)):
        own = (await taxes.taxes_of(conn, link, [owner]))[owner]
        if own:
            return _tax_terms(own)
    return _tax_terms(await taxes.organization_taxes(conn, org))


async def create_one_off_invoice(
    ctx: IngestContext, org: Organization, raw: dict[str, Any]
) -> dict[str, Any]:
    """The one-off invoice of Lago's input object, written; returns its extended body."""
    fields = Fields(raw, _INVOICE)
    external_customer_id = fields.text("external_customer_id", required=True)
    chosen_currency = currency(fields, "currency")
    raw_fees = fields.array("fees", required=True) or []
    if fields.has("fees") and not raw_fees:
        fields.add("fees", "no_fees")
    if len(raw_fees) > _MAX_FEES:
        fields.add("fees", "too_many_fees")
    parsed = [_parse_fee(fields, i, raw) for i, raw in enumerate(raw_fees)]
    fields.check()
    assert external_customer_id is not None
    now = datetime.now(UTC)
    async with db.unit_of_work(ctx.db) as conn:
        customer = await customers.customer_by_external_id(
            conn, org.id, external_customer_id, lock=True
        )
        if customer is None:
            raise NotFound("customer")
        fees: list[PricedFee] = []
        add_on_ids: list[uuid.UUID] = []
        descriptions: list[str | None] = []
        for item in parsed:
            assert item is not None
            row = await add_on(conn, org.id, item["add_on_code"])
            if row is None:
                raise NotFound("add_on")
            chosen_currency = chosen_currency or customer["currency"] or row["amount_currency"]
            units: Decimal = item["units"] if item["units"] is not None else Decimal(1)
            unit_cents = item["unit_amount_cents"]
            unit_cents = row["amount_cents"] if unit_cents is None else unit_cents
            precise_cents = units * unit_cents
            if precise_cents > _MAX_FEE_CENTS:
                raise ValidationFailed({f"fees.{len(fees)}.units": ["fee_amount_too_large"]})
            fees.append(
                PricedFee(
                    kind=FeeKind.ADD_ON,
                    item_code=row["code"],
                    item_name=row["name"],
                    invoice_display_name=item["invoice_display_name"]
                    or row["invoice_display_name"],
                    amount_cents=round_cents(precise_cents),
                    precise_amount=precise_cents.scaleb(-minor_units(chosen_currency)),
                    units=units,
                    events_count=None,
                    from_date=item["from_datetime"] or now,
                    to_date=item["to_datetime"] or now,
                    taxes=await _fee_taxes_terms(
                        conn, org.id, customer["id"], row["id"], item["tax_codes"]
                    ),
                )
            )
            add_on_ids.append(row["id"])
            descriptions.append(item["description"] or row["description"])
        assert chosen_currency is not None
        if customer["currency"] and customer["currency"] != chosen_currency:
            raise ValidationFailed({"currency": ["currencies_does_not_match"]})
        notes = await credit_notes.available(conn, customer["id"])
        totals, _ = invoice_totals(
            chosen_currency, fees, (), credit_notes_cents=available_cents(notes, chosen_currency)
        )
        invoice_id = await _write(conn, org.id, customer, chosen_currency, fees, totals, now)
        for i, (add_on_id, description) in enumerate(zip(add_on_ids, descriptions, strict=True)):
            await conn.execute(
                "UPDATE fees SET add_on_id = $2, description = $3 "
                "WHERE invoice_id = $1 AND position = $4",
                invoice_id,
                add_on_id,
                description,
                i,
            )
        await credit_notes.consume(
            conn,
            split_credit(totals.credit_notes_amount_cents, notes, chosen_currency),
            invoice_id,
        )
        invoice = await conn.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
        assert invoice is not None
        body = await extended_body(conn, invoice)
        await webhook_outbox.emit(conn, org.id, "invoice.one_off_created", invoice_id, body)
    return body


async def _write(
    conn: Conn,
    org: uuid.UUID,
    customer: asyncpg.Record,
    currency_code: str,
    fees: list[PricedFee],
    totals: Any,
    now: datetime,
) -> uuid.UUID:
    """The invoice (next in the customer's sequence) and its fees."""
    organization = await organizations.organization_row(conn, org)
    prefix = (organization["attributes"] or {}).get("document_number_prefix") or document_prefix(
        organization["name"], str(org)
    )
    n = await conn.fetchval(
        "INSERT INTO invoice_sequences (customer_id, last_sequential_id) VALUES ($1, 1) "
        "ON CONFLICT (customer_id) DO UPDATE "
        "SET last_sequential_id = invoice_sequences.last_sequential_id + 1 "
        "RETURNING last_sequential_id",
        customer["id"],
    )
    number = f"{prefix}-{customer['sequential_id']:03d}-{n:03d}"
    tz = ZoneInfo(customer["timezone"] or customer["organization_timezone"] or "UTC")
    invoice_id = uuid.uuid4()
    t = totals
    await conn.execute(
        "INSERT INTO invoices (id, organization_id, customer_id, subscription_id, period_key, "
        "sequential_id, number, invoice_type, status, currency, issuing_date, period_start, "
        "period_end, fees_amount_cents, coupons_amount_cents, taxes_amount_cents, "
        "sub_total_excluding_taxes_amount_cents, sub_total_including_taxes_amount_cents, "
        "credit_notes_amount_cents, total_amount_cents, finalized_at, applied_taxes) "
        "VALUES ($1, $2, $3, NULL, $4, $5, $6, 'one_off', 'finalized', $7, $8, $9, $9, $10, 0, "
        "$11, $12, $13, $14, $15, $9, $16)",
        invoice_id,
        org,
        customer["id"],
        f"one_off:{invoice_id}",
        n,
        number,
        currency_code,
        now.astimezone(tz).date(),
        now,
        t.fees_amount_cents,
        t.taxes_amount_cents,
        t.sub_total_excluding_taxes_amount_cents,
        t.sub_total_including_taxes_amount_cents,
        t.credit_notes_amount_cents,
        t.total_amount_cents,
        applied_taxes(fees, t, currency_code),
    )
    for position, (fee, fee_tax) in enumerate(zip(fees, t.fee_taxes, strict=True)):
        await conn.execute(
            "INSERT INTO fees (id, invoice_id, position, fee_type, item_code, item_name, "
            "invoice_display_name, amount_cents, precise_amount, currency, units, from_date, "
            "to_date, precise_coupons_amount_cents, taxes_amount_cents, "
            "taxes_precise_amount_cents, taxes_rate, applied_taxes) "
            "VALUES ($1, $2, $3, 'add_on', $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14, "
            "$15, $16)",
            uuid.uuid4(),
            invoice_id,
            position,
            fee.item_code,
            fee.item_name,
            fee.invoice_display_name,
            fee.amount_cents,
            fee.precise_amount,
            currency_code,
            fee.units,
            fee.from_date,
            fee.to_date,
            fee_tax.taxes_cents,
            fee_tax.taxes_precise_cents,
            fee_tax.taxes_rate,
            fee_taxes(fee, Decimal(fee.amount_cents)),
        )
    return invoice_id
