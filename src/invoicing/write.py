"""The invoice write (asyncpg): a batch of invoices with their fees, numbers and webhooks, and
the coupons, wallets, credit notes and pending late usage they consume, in one statement."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import field
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec

from billing.value import value
from invoicing import credits
from invoicing.closed_period import PeriodClosed
from invoicing.pricing import PricedInvoice
from invoicing.terms import Loaded
from meterflow import db, webhook_outbox
from meterflow.db import Conn
from read_model import credit_notes, drafts, invoice_rows
from read_model.drafts import CreditsChanged

# The invoicer's statements take whole batches as array and JSON parameters, which a plan
# cannot profit from seeing: one generic plan each, never planned again per execution (a
# batch of one closed period made Postgres plan the read anew each time, about 2.5 ms).
# Each looks rows up by key, through an index at any table size, never by a scan: a plan
# made while statistics said `invoices` and `fees` were (nearly) empty scanned them whole for
# every period of a batch (whether it was invoiced already, its earlier usage fees), and a
# session keeps its plan until the next ANALYZE however the tables grow meanwhile (a new
# deployment's first month-end: 534 us of Postgres CPU per invoice for the read at 4,000
# periods, against 21; `bench.invoicer_throughput --analyzed`).
_SESSION = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}


async def create_pool(dsn: str, *, schema: str, size: int) -> asyncpg.Pool:
    return await db.create_pool(
        dsn,
        schema=schema,
        size=size,
        settings=_SESSION,
        init=db.use_orjson,
        timeout=10,
        command_timeout=30,
    )


class AlreadyInvoiced(Exception):
    """A period of the batch got its invoice meanwhile (a concurrent redelivery): the whole
    batch rolled back; read it again (that period is then a duplicate) and write the rest."""


@value
class InvoiceToWrite:
    """One priced invoice of a batch. `pending_keys` name the pending late usage it bills as
    adjustments (`Loaded.pending`), marked as billed by the same statement."""

    closed: PeriodClosed
    loaded: Loaded
    priced: PricedInvoice
    pending_keys: tuple[str, ...] = ()
    invoice_id: uuid.UUID = field(default_factory=db.new_id)

    @property
    def consumes_credits(self) -> bool:
        p = self.priced
        return bool(p.coupon_uses or p.wallet_uses or p.credit_note_uses or self.pending_keys)


# The batch travels as one JSON document per table (a list of rows, each an object of these
# columns), read in SQL by json_to_recordset: one C encoder call per table instead of one
# array per column and a type check per element. The invoices' columns:
_INVOICE_COLUMNS = (
    ("id", "uuid"),
    ("organization_id", "uuid"),
    ("customer_id", "uuid"),
    ("subscription_id", "uuid"),
    ("period_key", "text"),
    ("prefix", "text"),
    ("status", "text"),
    ("currency", "text"),
    ("issuing_date", "date"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
    ("fees_amount_cents", "bigint"),
    ("coupons_amount_cents", "bigint"),
    ("taxes_amount_cents", "bigint"),
    ("sub_total_excluding_taxes_amount_cents", "bigint"),
    ("sub_total_including_taxes_amount_cents", "bigint"),
    ("prepaid_credit_amount_cents", "bigint"),
    ("credit_notes_amount_cents", "bigint"),
    ("total_amount_cents", "bigint"),
    ("billing_periods", "jsonb"),
    ("grace_until", "timestamptz"),
    ("closed_at", "timestamptz"),
    ("applied_taxes", "jsonb"),
    ("credits", "jsonb"),
    ("prepaid_granted_credit_amount_cents", "bigint"),
    ("coupon_uses", "jsonb"),
)
# The fees' columns; a fee names its invoice by its index in the invoices' document, from
# which the statement takes the invoice's id, subscription and currency (three values fewer
# to encode, send and parse per fee: the fees' document was a fifth smaller on the bench's
# rounds):
_FEE_COLUMNS = (
    ("invoice", "int"),
    ("position", "int"),
    ("fee_type", "text"),
    ("charge_id", "uuid"),
    ("billable_metric_id", "uuid"),
    ("item_code", "text"),
    ("item_name", "text"),
    ("invoice_display_name", "text"),
    ("amount_cents", "bigint"),
    ("precise_amount", "numeric"),
    ("units", "numeric"),
    ("events_count", "bigint"),
    ("pay_in_advance", "bool"),
    ("invoiceable", "bool"),
    ("from_date", "timestamptz"),
    ("to_date", "timestamptz"),
    ("usage_period_start", "timestamptz"),
    ("is_adjustment", "bool"),
    ("aggregation", "jsonb"),
    ("amount_details", "jsonb"),
    ("precise_coupons_amount_cents", "numeric"),
    ("taxes_amount_cents", "bigint"),
    ("taxes_precise_amount_cents", "numeric"),
    ("taxes_rate", "numeric"),
    ("applied_taxes", "jsonb"),
    ("id", "uuid"),
)
# The fee columns written (and read back by late_usage) as they stand on each PricedFee
# (item_code to is_adjustment).
_FEE_NAMES = [name for name, _ in _FEE_COLUMNS]
FEE_ATTRIBUTES = tuple(
    _FEE_NAMES[_FEE_NAMES.index("item_code") : _FEE_NAMES.index("is_adjustment") + 1]
)
# The fees' table columns the statement fills from the invoice a fee names (`input` i), and
# those it takes from the fees' document as they are.
_FEE_FROM_INVOICE = {
    "invoice_id": "i.id",
    "subscription_id": "i.subscription_id",
    "currency": "i.currency",
}
_FEE_STORED = _FEE_NAMES[1:]
# What the invoices consume: coupons' states (before and after), wallets' balances as read
# and what they pay, credit notes' balances and what they pay, late usage.
_COUPON_COLUMNS = (
    ("id", "uuid"),
    ("amount_after", "bigint"),
    ("periods_after", "int"),
    ("terminated", "bool"),
    ("amount_before", "bigint"),
    ("periods_before", "int"),
)
_WALLET_COLUMNS = drafts.USE_COLUMNS
_CREDIT_NOTE_COLUMNS = credit_notes.USE_COLUMNS
_LATE_COLUMNS = (("late_key", "text"), ("invoice_id", "uuid"))
_GROUPS = (
    _INVOICE_COLUMNS,
    _FEE_COLUMNS,
    _COUPON_COLUMNS,
    _WALLET_COLUMNS,
    _CREDIT_NOTE_COLUMNS,
    _LATE_COLUMNS,
)


def _rows(group: tuple[tuple[str, str], ...], alias: str) -> str:
    """`json_to_recordset($n) AS alias(name type, ...)` over the group's parameter."""
    return db.json_recordset(group, _GROUPS.index(group) + 1, alias)


def _positional(group: tuple[tuple[str, str], ...], alias: str) -> str:
    """`SELECT` of the group's columns from its parameter, a jsonb list of lists (a row a
    list), each column read by its position: jsonb reads an element by index without
    parsing the row again per column, and a jsonb column takes its element as it is (JSON
    null as SQL NULL, as json_to_recordset reads it). `ordinal` is the row's index in the list."""
    columns = ", ".join(
        f"nullif({alias} -> {i}, 'null') AS {name}"
        if kind == "jsonb"
        else f"({alias} ->> {i})::{kind} AS {name}"
        for i, (name, kind) in enumerate(group)
    )
    parameter = _GROUPS.index(group) + 1
    return (
        f"SELECT {columns}, rows.n - 1 AS ordinal "
        f"FROM jsonb_array_elements(${parameter}::text::jsonb) "
        f"WITH ORDINALITY AS rows({alias}, n)"
    )


def _invoice_insert() -> tuple[str, str]:
    """The invoices' columns and the values of each from the input row `i` and its
    customer's next sequential id `q.n` (its number: the prefix, then n on 3 digits)."""
    names, values = [], []
    for name, _ in _INVOICE_COLUMNS:
        if name == "prefix":
            names += ["sequential_id", "number"]
            values += [
                "q.n",
                "i.prefix || CASE WHEN q.n < 1000 THEN lpad(q.n::text, 3, '0') ELSE q.n::text END",
            ]
        else:
            names.append(name)
            values.append(f"i.{name}")
    names += ["finalized_at", "prepaid_purchased_credit_amount_cents"]
    values += [
        "CASE WHEN i.status = 'finalized' THEN now() END",
        "i.prepaid_credit_amount_cents - i.prepaid_granted_credit_amount_cents",
    ]
    return ", ".join(names), ", ".join(values)


_INVOICE_NAMES, _INVOICE_VALUES = _invoice_insert()

# The invoices' webhooks (invoice.drafted or invoice.created), rendered when first sent.
_INVOICE_WEBHOOKS = webhook_outbox.fan_out(
    "SELECT organization_id, CASE WHEN status = 'draft' THEN 'invoice.drafted' "
    "ELSE 'invoice.created' END AS webhook_type, 'invoice' AS object_type, id AS object_id, "
    "NULL::json AS payload FROM invoice"
)

# One statement, so one transaction: each customer's next sequential id (one invoice per
# customer in a batch), the invoices, their fees and webhooks, and what they consume (each
# guarded by the state it was priced with; the counts say whether every guard held). A
# second invoice for a period violates the unique period_key and the statement rolls back
# whole, sequence increments included (no gap in the numbering).
_WRITE_INVOICES = f"""
WITH input AS (
    {_positional(_INVOICE_COLUMNS, "i")}
), sequence AS (
    INSERT INTO invoice_sequences (customer_id, last_sequential_id)
    SELECT customer_id, 1 FROM input ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE
        SET last_sequential_id = invoice_sequences.last_sequential_id + 1
    RETURNING customer_id, last_sequential_id AS n
), invoice AS (
    INSERT INTO invoices ({_INVOICE_NAMES})
    SELECT {_INVOICE_VALUES}
    FROM input i JOIN sequence q USING (customer_id)
    RETURNING id, organization_id, status
), fee AS (
    INSERT INTO fees ({", ".join([*_FEE_FROM_INVOICE, *_FEE_STORED])})
    SELECT {", ".join(_FEE_FROM_INVOICE.values())},
        {", ".join(f"f.{name}" for name in _FEE_STORED)}
    FROM ({_positional(_FEE_COLUMNS, "f")}) f JOIN input i ON i.ordinal = f.invoice
    RETURNING 1
), webhook AS ({_INVOICE_WEBHOOKS}    RETURNING 1
), coupon AS (
    UPDATE applied_coupons ac SET amount_cents_remaining = u.amount_after,
        frequency_duration_remaining = u.periods_after,
        status = CASE WHEN u.terminated THEN 'terminated' ELSE 'active' END,
        terminated_at = CASE WHEN u.terminated THEN now() END, updated_at = now()
    FROM {_rows(_COUPON_COLUMNS, "u")}
    WHERE ac.id = u.id AND ac.status = 'active'
        AND ac.amount_cents_remaining IS NOT DISTINCT FROM u.amount_before
        AND ac.frequency_duration_remaining IS NOT DISTINCT FROM u.periods_before
    RETURNING 1
), {drafts.CONSUMED.format(uses=_rows(_WALLET_COLUMNS, "u"))},
{credit_notes.CONSUMED.format(uses=_rows(_CREDIT_NOTE_COLUMNS, "u"))}, late AS (
    UPDATE late_usage lu SET outcome = 'adjusted', invoice_id = u.invoice_id, updated_at = now()
    FROM {_rows(_LATE_COLUMNS, "u")}
    WHERE lu.late_key = u.late_key AND lu.outcome = 'pending'
    RETURNING 1
)
SELECT (SELECT count(*) FROM invoice) AS invoices, (SELECT count(*) FROM fee) AS fees,
    (SELECT count(*) FROM coupon) AS coupons, (SELECT count(*) FROM wallet) AS wallets,
    (SELECT count(*) FROM credit_note) AS credit_notes, (SELECT count(*) FROM late) AS late
"""


def _document(rows: Sequence[Mapping[str, Any]] | Sequence[list[Any]]) -> str:
    """The rows as the statement reads them: a JSON list of objects, one key per column, or
    of lists, a value per column in order (msgspec writes decimals as their exact text,
    which numeric columns read as written)."""
    return _ENCODER.encode(rows).decode()


def _named(rows: list[tuple[Any, ...]], group: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    names = [name for name, _ in group]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _plain(value: Any) -> Any:
    """What msgspec does not write itself: mappings other than dicts, as dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


def _invoice_row(item: InvoiceToWrite) -> list[Any]:
    """The item's invoice as the statement reads it: a value per _INVOICE_COLUMNS, in their
    order (a list, not a dict: this runs for every invoice of every round;
    tests/unit/invoicer/test_invoice_write_rows.py reads each column back by its name)."""
    closed, loaded, priced = item.closed, item.loaded, item.priced
    terms, t = loaded.terms, priced.totals
    organization_prefix = loaded.number_prefix or _document_prefix(
        loaded.organization_name, terms.organization_id
    )
    billing_periods = [
        {
            "lago_subscription_id": terms.subscription_id,
            "external_subscription_id": terms.external_id,
            "lago_plan_id": terms.plan.plan_id,
            "subscription_from_datetime": iso_instant(priced.subscription_from),
            "subscription_to_datetime": iso_instant(priced.subscription_to),
            "charges_from_datetime": iso_instant(closed.period_start),
            "charges_to_datetime": iso_instant(closed.period_end),
            "invoicing_reason": priced.invoicing_reason,
        }
    ]
    draft_coupons = priced.status == "draft" and priced.coupon_uses
    return [
        item.invoice_id,  # id
        terms.organization_id,  # organization_id
        terms.customer_id,  # customer_id
        terms.subscription_id,  # subscription_id
        priced.period_key,  # period_key
        f"{organization_prefix}-{loaded.customer_sequence:03d}-",  # prefix
        priced.status,  # status
        priced.currency,  # currency
        priced.issuing_date,  # issuing_date
        closed.period_start,  # period_start
        closed.period_end,  # period_end
        t.fees_amount_cents,  # fees_amount_cents
        t.coupons_amount_cents,  # coupons_amount_cents
        t.taxes_amount_cents,  # taxes_amount_cents
        t.sub_total_excluding_taxes_amount_cents,  # sub_total_excluding_taxes_amount_cents
        t.sub_total_including_taxes_amount_cents,  # sub_total_including_taxes_amount_cents
        t.prepaid_credit_amount_cents,  # prepaid_credit_amount_cents
        t.credit_notes_amount_cents,  # credit_notes_amount_cents
        t.total_amount_cents,  # total_amount_cents
        billing_periods,  # billing_periods
        priced.grace_until,  # grace_until
        closed.closed_at,  # closed_at
        invoice_rows.applied_taxes(priced.fees, t, priced.currency),  # applied_taxes
        credits.coupon_credits(priced.coupon_uses, priced.currency),  # credits
        priced.prepaid_granted_cents,  # prepaid_granted_credit_amount_cents
        credits.coupon_uses_json(priced.coupon_uses) if draft_coupons else [],  # coupon_uses
    ]


def _fee_rows(item: InvoiceToWrite, invoice: int, ids: Iterator[str]) -> list[list[Any]]:
    """The item's fees, each naming its invoice by `invoice`, its index in the round, and
    with the next of `ids` as its own: a value per _FEE_COLUMNS, in their order (as
    _invoice_row's, tested by name)."""
    priced = item.priced
    rows = []
    for position, (f, ft) in enumerate(zip(priced.fees, priced.totals.fee_taxes, strict=True)):
        rows.append(
            [
                invoice,  # invoice
                position,  # position
                f.kind.value,  # fee_type
                f.charge_id,  # charge_id
                f.billable_metric_id,  # billable_metric_id
                f.item_code,  # item_code
                f.item_name,  # item_name
                f.invoice_display_name,  # invoice_display_name
                f.amount_cents,  # amount_cents
                f.precise_amount,  # precise_amount
                f.units,  # units
                f.events_count,  # events_count
                f.pay_in_advance,  # pay_in_advance
                f.invoiceable,  # invoiceable
                f.from_date,  # from_date
                f.to_date,  # to_date
                f.usage_period_start,  # usage_period_start
                f.is_adjustment,  # is_adjustment
                f.aggregation,  # aggregation
                f.amount_details,  # amount_details
                ft.precise_coupons_cents,  # precise_coupons_amount_cents
                ft.taxes_cents,  # taxes_amount_cents
                ft.taxes_precise_cents,  # taxes_precise_amount_cents
                ft.taxes_rate,  # taxes_rate
                # applied_taxes (most fees have none: no taxable base to work out)
                invoice_rows.fee_taxes(f, f.amount_cents - ft.precise_coupons_cents)
                if f.taxes
                else {},
                next(ids),  # id
            ]
        )
    return rows


async def write_invoices(conn: Conn, items: Sequence[InvoiceToWrite]) -> None:
    """Write the batch's invoices, fees, webhooks and what they consume atomically (at most
    one invoice per customer). AlreadyInvoiced (nothing written) when a period got its
    invoice meanwhile; CreditsChanged (nothing written) when a coupon, wallet, credit note
    or pending late usage is no longer in the state the invoice was priced with."""
    if not items:
        return
    invoices = [_invoice_row(item) for item in items]
    # The fees' ids are drawn here, all at once and time-ordered (as the invoices' are):
    # Postgres built without OpenSSL (the embedded stack's) opens and reads /dev/urandom for
    # each gen_random_uuid(), about 2.7 us a call, and a random id lands on a random page of
    # the primary key's index.
    ids = iter(db.new_ids(sum(len(item.priced.fees) for item in items)))
    fees = [row for i, item in enumerate(items) for row in _fee_rows(item, i, ids)]
    consumed = credits.consumed_rows(items)
    args = [_document(invoices), _document(fees)] + [
        _document(_named(rows, group)) for rows, group in zip(consumed, _GROUPS[2:], strict=True)
    ]
    if not any(consumed):
        # One statement, atomic on its own: no BEGIN and COMMIT round trips.
        await _execute(conn, args, len(items), len(fees))
        return
    # What they consume commits with the invoices or not at all.
    async with conn.transaction():
        row = await _execute(conn, args, len(items), len(fees))
        for what, rows in zip(
            ("coupons", "wallets", "credit_notes", "late"), consumed, strict=True
        ):
            if row[what] != len(rows):
                raise CreditsChanged(f"{what}: {row[what]} of {len(rows)} still as priced")


async def _execute(conn: Conn, args: list[str], invoices: int, fees: int) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(_WRITE_INVOICES, *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "invoices_period_key_key":
            raise
        raise AlreadyInvoiced(exc.detail or "") from None
    assert row is not None and (row["invoices"], row["fees"]) == (invoices, fees)
    return row


async def insert_invoice(
    conn: Conn,
    closed: PeriodClosed,
    loaded: Loaded,
    priced: PricedInvoice,
    pending_keys: Sequence[str] = (),
) -> uuid.UUID:
    """`write_invoices` of one invoice (the preview's write); returns its id."""
    item = InvoiceToWrite(closed, loaded, priced, tuple(pending_keys))
    await write_invoices(conn, [item])
    return item.invoice_id


# A round's invoices mostly share their organization: its prefix is worked out once.
_document_prefix = lru_cache(maxsize=1024)(invoice_rows.document_prefix)


@lru_cache(maxsize=4096)  # the invoices of a batch mostly share their periods' bounds
def iso_instant(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
