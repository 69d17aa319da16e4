"""What the invoicer reads before pricing a closed period or late usage: the subscription's
terms (plan, charges, taxes, coupons, wallets, credit notes) and what its period invoiced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from billing.invoice import (
    AppliedCoupon,
    CouponFrequency,
    CouponType,
)
from billing.invoice_terms import CustomerCoupon, TaxTerms, WalletTerms
from billing.value import value
from invoicing.closed_period import (
    Adjustment,
    LateUsage,
    PeriodClosed,
    charges_from_json,
)
from invoicing.errors import PoisonMessage
from invoicing.subscription_terms import (
    ChargeTerms,
    InvoicedUsage,
    PlanTerms,
    SubscriptionTerms,
)
from meterflow.db import Conn
from read_model import credit_notes

# The invoice's taxes: the plan's, else the customer's, else the organization's defaults
# (Lago's precedence); a charge's own taxes, read with the charge, replace them on its
# fees. Rates travel as text so that they stay exact decimals.
_TAXES = (
    "SELECT coalesce(json_agg(json_build_object('id', t.id, 'code', t.code, 'name', t.name, "
    "'rate', t.rate::text, 'description', t.description) ORDER BY t.code), '[]') "
    "FROM taxes t WHERE t.id IN ("
    "SELECT tax_id FROM plan_taxes WHERE plan_id = s.plan_id "
    "UNION ALL SELECT tax_id FROM customer_taxes WHERE customer_id = s.customer_id "
    "AND NOT EXISTS (SELECT 1 FROM plan_taxes WHERE plan_id = s.plan_id) "
    "UNION ALL SELECT id FROM taxes WHERE organization_id = s.organization_id "
    "AND applied_to_organization "
    "AND NOT EXISTS (SELECT 1 FROM plan_taxes WHERE plan_id = s.plan_id) "
    "AND NOT EXISTS (SELECT 1 FROM customer_taxes WHERE customer_id = s.customer_id))"
)


# The customer's active applied coupons in Lago's order: oldest first.
_COUPONS = (
    "SELECT coalesce(json_agg(json_build_object('id', ac.id, 'coupon_id', ac.coupon_id, "
    "'coupon_code', cp.code, 'coupon_name', cp.name, 'coupon_type', cp.coupon_type, "
    "'frequency', ac.frequency, 'amount_cents', ac.amount_cents, "
    "'amount_currency', ac.amount_currency, 'percentage_rate', ac.percentage_rate::text, "
    "'frequency_duration_remaining', ac.frequency_duration_remaining, "
    "'amount_cents_remaining', ac.amount_cents_remaining) ORDER BY ac.created_at, ac.id), '[]') "
    "FROM applied_coupons ac JOIN coupons cp ON cp.id = ac.coupon_id "
    "WHERE ac.customer_id = s.customer_id AND ac.status = 'active'"
)


# The customer's usable wallets in Lago's order: priority (1 first), then oldest.
_WALLETS = (
    "SELECT coalesce(json_agg(json_build_object('id', w.id, 'currency', w.currency, "
    "'balance_cents', w.balance_cents, 'granted_balance_cents', w.granted_balance_cents) "
    "ORDER BY w.priority, w.created_at, w.id), '[]') "
    "FROM wallets w WHERE w.customer_id = s.customer_id AND w.status = 'active' "
    "AND w.balance_cents > 0 AND (w.expiration_at IS NULL OR w.expiration_at > now())"
)


# The customer's available credit notes, oldest first.
_CREDIT_NOTES = credit_notes.AVAILABLE_JSON.format(customer="s.customer_id")


# Late usage waiting for the subscription's next invoice: of periods before the closing one.
_PENDING = (
    "lu.subscription_id = s.id AND lu.outcome = 'pending' AND lu.period_start < i.period_start"
)

# The aggregation states already invoiced for the (charge, usage period) pairs the message's
# adjustments and the pending late usage bill on top of.
_INVOICED = (
    "SELECT coalesce(json_agg(json_build_object('charge_id', f.charge_id, "
    "'usage_period_start', f.usage_period_start, 'aggregation', f.aggregation) "
    "ORDER BY f.created_at, f.position), '[]') FROM fees f "
    "WHERE f.subscription_id = s.id AND f.aggregation IS NOT NULL "
    "AND (f.charge_id, f.usage_period_start) IN ("
    "SELECT (a ->> 0)::uuid, (a ->> 1)::timestamptz FROM jsonb_array_elements(i.adjusted) a "
    "UNION ALL SELECT (c ->> 'charge_id')::uuid, lu.period_start "
    "FROM late_usage lu CROSS JOIN jsonb_array_elements(lu.charges) c "
    f"WHERE {_PENDING})"
)

# The charges a batch names (its messages' and their pending late usage's), read once for
# the whole batch (`i`: the batch's input rows): a plan's charges are the same in every row.
_BATCH_CHARGES = (
    "SELECT coalesce(json_agg(json_build_object('id', ch.id, 'charge_model', ch.charge_model, "
    "'properties', ch.properties, 'invoiceable', ch.invoiceable, 'attributes', ch.attributes, "
    "'metric_id', bm.id, 'metric_code', bm.code, 'metric_name', bm.name, "
    "'taxes', (SELECT coalesce(json_agg(json_build_object('id', t.id, 'code', t.code, "
    "'name', t.name, 'rate', t.rate::text, 'description', t.description) ORDER BY t.code), "
    "'[]') FROM charge_taxes ct JOIN taxes t ON t.id = ct.tax_id WHERE ct.charge_id = ch.id)"
    ")), '[]') "
    "FROM charges ch JOIN billable_metrics bm ON bm.id = ch.billable_metric_id "
    "WHERE ch.id IN (SELECT unnest(string_to_array(ids, ',')::uuid[]) FROM unnest($6::text[]) "
    "AS ids UNION SELECT (c ->> 'charge_id')::uuid "
    "FROM unnest($2::uuid[], $5::timestamptz[]) AS b(subscription_id, period_start) "
    "JOIN late_usage lu ON lu.subscription_id = b.subscription_id AND lu.outcome = 'pending' "
    "AND lu.period_start < b.period_start CROSS JOIN jsonb_array_elements(lu.charges) c)"
)

# One JSON document for the whole batch, in one round trip: a row per message (`n`, its
# index) whose subscription is in the catalog, with everything its invoice needs, and the
# batch's charges once (one orjson call reads it all, instead of a decoder call per column
# of every row). The invoicer's pool runs it with one generic plan of index lookups
# (`write.create_pool`).
_TERMS = (
    "SELECT json_build_object('rows', (SELECT coalesce(json_agg(found), '[]') FROM ("
    "SELECT i.n, EXISTS (SELECT 1 FROM invoices WHERE period_key = i.period_key) AS invoiced, "
    "c.sequential_id AS customer_sequence, o.name AS organization_name, "
    "s.id, s.organization_id, s.customer_id, s.external_id, s.billing_time, "
    "s.subscription_at, c.timezone AS customer_timezone, c.attributes AS customer_attributes, "
    "o.timezone AS organization_timezone, o.attributes AS organization_attributes, "
    "p.id AS plan_id, p.code AS plan_code, "
    "p.name AS plan_name, p.attributes AS plan_attributes, p.interval, p.amount_cents, "
    "p.amount_currency, p.pay_in_advance, "
    "(SELECT coalesce(json_agg(json_build_object('late_key', lu.late_key, "
    "'period_start', lu.period_start, 'period_end', lu.period_end, 'charges', lu.charges) "
    f"ORDER BY lu.created_at, lu.late_key), '[]') FROM late_usage lu WHERE {_PENDING}) "
    "AS pending, "
    f"({_TAXES}) AS taxes, ({_COUPONS}) AS coupons, ({_WALLETS}) AS wallets, "
    f"({_CREDIT_NOTES}) AS credit_notes, ({_INVOICED}) AS invoiced_usage "
    "FROM (SELECT n, subscription_id, organization_id, period_key, period_start, "
    "adjusted::jsonb AS adjusted "
    "FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], "
    "$7::text[]) AS i(n, subscription_id, organization_id, period_key, period_start, "
    "adjusted)) i "
    "JOIN subscriptions s ON s.id = i.subscription_id AND s.organization_id = i.organization_id "
    "JOIN customers c ON c.id = s.customer_id "
    "JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id) found), "
    f"'charges', ({_BATCH_CHARGES}))::text"
)


def _charge_ids(closed: PeriodClosed | LateUsage) -> set[str]:
    ids = {c.charge_id for c in closed.charges}  # canonical uuid text (closed_period)
    ids.update(c.charge_id for a in closed.adjustments for c in a.charges)
    return ids


def _configured_grace(attributes: dict[str, Any]) -> int | None:
    configuration = attributes.get("billing_configuration") or {}
    days = configuration.get("invoice_grace_period") if isinstance(configuration, dict) else None
    return days if isinstance(days, int) and not isinstance(days, bool) and days >= 0 else None


def grace_days(customer: dict[str, Any], organization: dict[str, Any]) -> int:
    """The customer's invoice grace period when it has one (0 included), else the
    organization's, else none."""
    own = _configured_grace(customer)
    return own if own is not None else (_configured_grace(organization) or 0)


def _tax_terms(rows: list[dict[str, Any]]) -> tuple[TaxTerms, ...]:
    return tuple(
        TaxTerms(str(t["id"]), t["code"], t["name"], Decimal(t["rate"]), t["description"])
        for t in rows
    )


def applied_coupon_state(row: Mapping[str, Any]) -> AppliedCoupon:
    rate = row["percentage_rate"]
    return AppliedCoupon(
        coupon_type=CouponType(row["coupon_type"]),
        frequency=CouponFrequency(row["frequency"]),
        amount_cents=row["amount_cents"],
        amount_currency=row["amount_currency"],
        percentage_rate=None if rate is None else Decimal(rate),
        frequency_duration_remaining=row["frequency_duration_remaining"],
        amount_cents_remaining=row["amount_cents_remaining"],
        code=str(row["id"]),
    )


@value
class Loaded:
    """The catalog terms of a closed period, and what numbering its invoice needs."""

    terms: SubscriptionTerms
    already_invoiced: bool
    customer_sequence: int
    organization_name: str
    # The organization's own `document_number_prefix` (PUT /api/v1/organizations), if set.
    number_prefix: str | None = None
    # Late usage of earlier periods waiting for this invoice (`late_usage` rows 'pending'),
    # oldest first, and their keys.
    pending: tuple[Adjustment, ...] = ()
    pending_keys: tuple[str, ...] = ()
    # What earlier invoices billed for the periods its adjustments (and `pending`) price on.
    invoiced: InvoicedUsage = field(default_factory=dict)


async def load_many(
    conn: Conn, messages: Sequence[PeriodClosed | LateUsage]
) -> list[Loaded | None]:
    """For each message, in one round trip: the subscription, plan, customer and charges it
    names, whether its period is already invoiced, the pending late usage its invoice bills
    and what was invoiced before for every period it adjusts; None when the subscription is
    not in the catalog (ingest writes Postgres before the aggregator can know a
    subscription, so a missing one will never appear)."""
    if not messages:
        return []
    document = await conn.fetchval(
        _TERMS,
        list(range(len(messages))),
        [m.subscription_id for m in messages],  # canonical uuid text (closed_period)
        [m.organization_id for m in messages],
        [m.period_key for m in messages],
        [m.period_start for m in messages],
        [",".join(_charge_ids(m)) for m in messages],
        [_adjusted_json(m) for m in messages],
    )
    batch = orjson.loads(document)
    found: list[Loaded | None] = [None] * len(messages)
    # One snapshot of the catalog: every row shares the batch's charges and, per plan, one
    # PlanTerms (they read the same in every row of one statement).
    charges = {c["id"]: _charge_terms(c) for c in batch["charges"]}
    plans: dict[str, PlanTerms] = {}
    for row in batch["rows"]:
        found[row["n"]] = _loaded(row, charges, plans)
    return found


async def load(conn: Conn, message: PeriodClosed | LateUsage) -> Loaded:
    """`load_many` of one message; PoisonMessage when its subscription is not in the catalog."""
    (loaded,) = await load_many(conn, [message])
    if loaded is None:
        raise not_found(message)
    return loaded


def not_found(message: PeriodClosed | LateUsage) -> PoisonMessage:
    """The poison of a message whose subscription is not in the catalog."""
    return PoisonMessage(
        "subscription_not_found",
        f"subscription {message.subscription_id} of organization {message.organization_id}",
    )


def _adjusted_json(message: PeriodClosed | LateUsage) -> str:
    """The (charge, usage period start) pairs the message adjusts, as the read takes them."""
    if isinstance(message, LateUsage) or not message.adjustments:
        return "[]"
    pairs = [
        (c.charge_id, a.period_start.isoformat()) for a in message.adjustments for c in a.charges
    ]
    return orjson.dumps(pairs).decode()


def _charge_terms(c: dict[str, Any]) -> ChargeTerms:
    """The charge's terms as read (its model reads its properties once, on first use)."""
    return ChargeTerms(
        charge_id=str(c["id"]),
        charge_model=c["charge_model"],
        properties=c["properties"] or {},
        invoiceable=c["invoiceable"],
        billable_metric_id=str(c["metric_id"]),
        metric_code=c["metric_code"],
        metric_name=c["metric_name"],
        invoice_display_name=(c["attributes"] or {}).get("invoice_display_name"),
        taxes=_tax_terms(c["taxes"]),
    )


def _plan(row: dict[str, Any], plans: dict[str, PlanTerms]) -> PlanTerms:
    """The row's plan, built once per read."""
    found = plans.get(row["plan_id"])
    if found is None:
        found = plans[row["plan_id"]] = PlanTerms(
            plan_id=row["plan_id"],
            code=row["plan_code"],
            name=row["plan_name"],
            invoice_display_name=(row["plan_attributes"] or {}).get("invoice_display_name"),
            interval=row["interval"],
            amount_cents=row["amount_cents"],
            amount_currency=row["amount_currency"],
            pay_in_advance=row["pay_in_advance"],
        )
    return found


@lru_cache(maxsize=4096)  # a batch's subscriptions mostly share their start
def _instant(text: str) -> datetime:
    """A timestamptz as Postgres writes it in JSON, as the UTC datetime asyncpg would give."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _loaded(
    row: dict[str, Any], charges: Mapping[str, ChargeTerms], plans: dict[str, PlanTerms]
) -> Loaded:
    terms = SubscriptionTerms(
        subscription_id=row["id"],
        organization_id=row["organization_id"],
        customer_id=row["customer_id"],
        external_id=row["external_id"],
        billing_time=row["billing_time"],
        subscription_at=_instant(row["subscription_at"]),
        timezone=row["customer_timezone"],
        organization_timezone=row["organization_timezone"],
        invoice_grace_period_days=grace_days(
            row["customer_attributes"] or {}, row["organization_attributes"] or {}
        ),
        plan=_plan(row, plans),
        charges=charges,
        taxes=_tax_terms(row["taxes"]),
        coupons=tuple(
            CustomerCoupon(
                applied_coupon_id=str(c["id"]),
                coupon_id=str(c["coupon_id"]),
                coupon_code=c["coupon_code"],
                coupon_name=c["coupon_name"],
                state=applied_coupon_state(c),
            )
            for c in row["coupons"]
        ),
        wallets=tuple(
            WalletTerms(str(w["id"]), w["currency"], w["balance_cents"], w["granted_balance_cents"])
            for w in row["wallets"]
        ),
        credit_notes=credit_notes.from_json(row["credit_notes"]),
    )
    return Loaded(
        terms=terms,
        already_invoiced=row["invoiced"],
        customer_sequence=row["customer_sequence"],
        organization_name=row["organization_name"],
        number_prefix=(row["organization_attributes"] or {}).get("document_number_prefix"),
        pending=tuple(
            Adjustment(
                datetime.fromisoformat(p["period_start"]),
                datetime.fromisoformat(p["period_end"]),
                charges_from_json(p["charges"]),
            )
            for p in row["pending"]
        ),
        pending_keys=tuple(p["late_key"] for p in row["pending"]),
        invoiced=_invoiced_usage(row["invoiced_usage"]),
    )


def _invoiced_usage(rows: list[dict[str, Any]]) -> InvoicedUsage:
    """The aggregation states already invoiced, by (charge, usage period start)."""
    out: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["charge_id"], datetime.fromisoformat(r["usage_period_start"]))
        out.setdefault(key, []).append(r["aggregation"])
    return out
