"""Postgres access of the invoicer (asyncpg): the catalog it prices with, and the invoices
and fees it writes, each invoice with its fees in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from invoicer.closed_period import PeriodClosed
from invoicer.errors import PoisonMessage
from invoicer.pricing import (
    ChargeTerms,
    InvoicedUsage,
    PlanTerms,
    PricedInvoice,
    SubscriptionTerms,
)

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        server_settings={"search_path": schema},
        init=_init_connection,
        timeout=10,
        command_timeout=30,
    )
    assert pool is not None
    return pool


_TERMS = (
    "SELECT EXISTS (SELECT 1 FROM invoices WHERE period_key = $3) AS invoiced, "
    "c.sequential_id AS customer_sequence, o.name AS organization_name, "
    "s.id, s.organization_id, s.customer_id, s.external_id, s.billing_time, "
    "s.subscription_at, c.timezone AS customer_timezone, c.attributes AS customer_attributes, "
    "o.timezone AS organization_timezone, p.id AS plan_id, p.code AS plan_code, "
    "p.name AS plan_name, p.attributes AS plan_attributes, p.interval, p.amount_cents, "
    "p.amount_currency, p.pay_in_advance "
    "FROM subscriptions s JOIN customers c ON c.id = s.customer_id "
    "JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id "
    "WHERE s.id = $1 AND s.organization_id = $2"
)

_CHARGES = (
    "SELECT ch.id, ch.charge_model, ch.properties, ch.invoiceable, ch.attributes, "
    "bm.id AS metric_id, bm.code AS metric_code, bm.name AS metric_name "
    "FROM charges ch JOIN billable_metrics bm ON bm.id = ch.billable_metric_id "
    "WHERE ch.id = ANY($1::uuid[])"
)


def _grace_days(attributes: dict[str, Any]) -> int:
    configuration = attributes.get("billing_configuration") or {}
    days = configuration.get("invoice_grace_period") if isinstance(configuration, dict) else 0
    return days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else 0


class AlreadyInvoiced(Exception):
    """The period got its invoice meanwhile (a concurrent redelivery): roll back, skip."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """The catalog terms of a closed period, and what numbering its invoice needs."""

    terms: SubscriptionTerms
    already_invoiced: bool
    customer_sequence: int
    organization_name: str


async def load(conn: Conn, closed: PeriodClosed) -> Loaded:
    """The subscription, plan, customer and charges the message names, and whether the
    period is already invoiced; PoisonMessage when the subscription is not in the catalog
    (ingest writes Postgres before the aggregator can know a subscription, so a missing
    one will never appear)."""
    row = await conn.fetchrow(
        _TERMS,
        uuid.UUID(closed.subscription_id),
        uuid.UUID(closed.organization_id),
        closed.period_key,
    )
    if row is None:
        raise PoisonMessage(
            "subscription_not_found",
            f"subscription {closed.subscription_id} of organization {closed.organization_id}",
        )
    charge_ids = {c.charge_id for c in closed.charges}
    charge_ids.update(c.charge_id for a in closed.adjustments for c in a.charges)
    if row["invoiced"]:
        charges = []
    else:
        charges = list(await conn.fetch(_CHARGES, [uuid.UUID(i) for i in charge_ids]))
    plan_attributes: dict[str, Any] = row["plan_attributes"] or {}
    terms = SubscriptionTerms(
        subscription_id=str(row["id"]),
        organization_id=str(row["organization_id"]),
        customer_id=str(row["customer_id"]),
        external_id=row["external_id"],
        billing_time=row["billing_time"],
        subscription_at=row["subscription_at"],
        timezone=row["customer_timezone"],
        organization_timezone=row["organization_timezone"],
        invoice_grace_period_days=_grace_days(row["customer_attributes"] or {}),
        plan=PlanTerms(
            plan_id=str(row["plan_id"]),
            code=row["plan_code"],
            name=row["plan_name"],
            invoice_display_name=plan_attributes.get("invoice_display_name"),
            interval=row["interval"],
            amount_cents=row["amount_cents"],
            amount_currency=row["amount_currency"],
            pay_in_advance=row["pay_in_advance"],
        ),
        charges={
            str(c["id"]): ChargeTerms(
                charge_id=str(c["id"]),
                charge_model=c["charge_model"],
                properties=c["properties"] or {},
                invoiceable=c["invoiceable"],
                billable_metric_id=str(c["metric_id"]),
                metric_code=c["metric_code"],
                metric_name=c["metric_name"],
                invoice_display_name=(c["attributes"] or {}).get("invoice_display_name"),
            )
            for c in charges
        },
    )
    return Loaded(
        terms=terms,
        already_invoiced=row["invoiced"],
        customer_sequence=row["customer_sequence"],
        organization_name=row["organization_name"],
    )


async def invoiced_usage(conn: Conn, closed: PeriodClosed) -> InvoicedUsage:
    """The aggregation states already invoiced for each late period's charges."""
    wanted = [(c.charge_id, a.period_start) for a in closed.adjustments for c in a.charges]
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT charge_id, usage_period_start, aggregation FROM fees "
        "WHERE subscription_id = $1 AND charge_id = ANY($2::uuid[]) "
        "AND usage_period_start = ANY($3::timestamptz[]) AND aggregation IS NOT NULL "
        "ORDER BY created_at, position",
        uuid.UUID(closed.subscription_id),
        [uuid.UUID(c) for c, _ in wanted],
        [s for _, s in wanted],
    )
    out: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((str(r["charge_id"]), r["usage_period_start"]), []).append(r["aggregation"])
    return out


def document_prefix(organization_name: str, organization_id: str) -> str:
    """Lago's default invoice number prefix: three letters of the name, four of the id."""
    letters = "".join(ch for ch in organization_name.upper() if ch.isalnum())[:3] or "INV"
    return f"{letters}-{organization_id.replace('-', '')[-4:].upper()}"


async def insert_invoice(
    conn: Conn, closed: PeriodClosed, loaded: Loaded, priced: PricedInvoice
) -> uuid.UUID:
    """Write the invoice and its fees; call inside a transaction, which AlreadyInvoiced
    (the period got its invoice meanwhile) must roll back, sequence number included."""
    terms = loaded.terms
    customer_id = uuid.UUID(terms.customer_id)
    sequence = await conn.fetchval(
        "INSERT INTO invoice_sequences (customer_id, last_sequential_id) VALUES ($1, 1) "
        "ON CONFLICT (customer_id) DO UPDATE "
        "SET last_sequential_id = invoice_sequences.last_sequential_id + 1 "
        "RETURNING last_sequential_id",
        customer_id,
    )
    number = (
        f"{document_prefix(loaded.organization_name, terms.organization_id)}-"
        f"{loaded.customer_sequence:03d}-{sequence:03d}"
    )
    invoice_id = uuid.uuid4()
    t = priced.totals
    billing_periods = [
        {
            "lago_subscription_id": terms.subscription_id,
            "external_subscription_id": terms.external_id,
            "lago_plan_id": terms.plan.plan_id,
            "subscription_from_datetime": _iso(priced.subscription_from),
            "subscription_to_datetime": _iso(priced.subscription_to),
            "charges_from_datetime": _iso(closed.period_start),
            "charges_to_datetime": _iso(closed.period_end),
            "invoicing_reason": priced.invoicing_reason,
        }
    ]
    inserted = await conn.fetchval(
        "INSERT INTO invoices (id, organization_id, customer_id, subscription_id, period_key, "
        "sequential_id, number, status, currency, issuing_date, period_start, period_end, "
        "fees_amount_cents, coupons_amount_cents, taxes_amount_cents, "
        "sub_total_excluding_taxes_amount_cents, sub_total_including_taxes_amount_cents, "
        "prepaid_credit_amount_cents, credit_notes_amount_cents, total_amount_cents, "
        "billing_periods, grace_until, finalized_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, "
        "CASE WHEN $8 = 'finalized' THEN now() END, $23) "
        "ON CONFLICT (period_key) DO NOTHING RETURNING id",
        invoice_id,
        uuid.UUID(terms.organization_id),
        customer_id,
        uuid.UUID(terms.subscription_id),
        priced.period_key,
        sequence,
        number,
        priced.status,
        priced.currency,
        priced.issuing_date,
        closed.period_start,
        closed.period_end,
        t.fees_amount_cents,
        t.coupons_amount_cents,
        t.taxes_amount_cents,
        t.sub_total_excluding_taxes_amount_cents,
        t.sub_total_including_taxes_amount_cents,
        t.prepaid_credit_amount_cents,
        t.credit_notes_amount_cents,
        t.total_amount_cents,
        billing_periods,
        priced.grace_until,
        closed.closed_at,
    )
    if inserted is None:
        raise AlreadyInvoiced(priced.period_key)
    await conn.executemany(
        "INSERT INTO fees (id, invoice_id, subscription_id, position, fee_type, charge_id, "
        "billable_metric_id, item_code, item_name, invoice_display_name, amount_cents, "
        "precise_amount, currency, units, events_count, pay_in_advance, invoiceable, from_date, "
        "to_date, usage_period_start, is_adjustment, aggregation, amount_details) VALUES ($1, "
        "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, "
        "$21, $22, $23)",
        [
            (
                uuid.uuid4(),
                invoice_id,
                uuid.UUID(terms.subscription_id),
                position,
                fee.kind.value,
                None if fee.charge_id is None else uuid.UUID(fee.charge_id),
                None if fee.billable_metric_id is None else uuid.UUID(fee.billable_metric_id),
                fee.item_code,
                fee.item_name,
                fee.invoice_display_name,
                fee.amount_cents,
                fee.precise_amount,
                priced.currency,
                fee.units,
                fee.events_count,
                fee.pay_in_advance,
                fee.invoiceable,
                fee.from_date,
                fee.to_date,
                fee.usage_period_start,
                fee.is_adjustment,
                None if fee.aggregation is None else dict(fee.aggregation),
                dict(fee.amount_details),
            )
            for position, fee in enumerate(priced.fees)
        ],
    )
    return invoice_id


async def finalize_due_drafts(conn: Conn, now: datetime) -> Sequence[asyncpg.Record]:
    """Finalize the drafts whose grace period has ended; returns (id, total, currency)."""
    rows = await conn.fetch(
        "UPDATE invoices SET status = 'finalized', grace_until = NULL, finalized_at = $1, "
        "updated_at = $1 WHERE status = 'draft' AND grace_until <= $1 "
        "RETURNING id, total_amount_cents, currency",
        now,
    )
    return list(rows)


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
