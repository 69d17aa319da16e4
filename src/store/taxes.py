"""Taxes' rules and SQL: tax rates, and which of them apply by default.

Which taxes a fee bears, as Lago decides it: a charge's own taxes (its `tax_codes` in a
plan) on that charge's fees; otherwise the plan's taxes when the plan has any, else the
customer's when the customer has any, else the organization's defaults (the taxes
`applied_to_organization`). The invoicer reads the same tables when it prices an invoice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from meterflow.db import Conn
from store import code_keyed, database
from web.errors import NotFound
from web.payload import Fields, is_text, iso

_TAX = {"name", "code", "rate", "description", "applied_to_organization"}


_MAX_RATE = Decimal(1000)


def tax_body(row: asyncpg.Record) -> dict[str, Any]:
    rate: Decimal = row["rate"]
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "code": row["code"],
        "description": row["description"],
        # A JSON number, as Lago's Tax object has it; money never goes through it.
        "rate": float(rate),
        "applied_to_organization": row["applied_to_organization"],
        "applied_to_billing_entities_codes": [],
        "created_at": iso(row["created_at"]),
    }


def check_tax_codes(codes: Any, known: set[str]) -> None:
    """404 `tax_not_found` when `tax_codes` (a list of strings) names a tax the organization
    does not have, as Lago answers; a malformed list is left to the field checks."""
    if (
        isinstance(codes, list)
        and all(is_text(c) for c in codes)
        and any(code not in known for code in codes)
    ):
        raise NotFound("tax")


def tax_fields(raw: dict[str, Any], current: asyncpg.Record | None) -> dict[str, Any]:
    fields = Fields(raw, _TAX)
    creating = current is None
    given = {
        "name": fields.text("name", required=creating),
        "code": fields.text("code", required=creating),
        "rate": fields.decimal("rate", low=Decimal(0), high=_MAX_RATE, required=creating),
        "description": fields.text("description", max_length=10_000),
        "applied_to_organization": fields.flag("applied_to_organization"),
    }
    fields.check()
    merged: dict[str, Any] = (
        {"applied_to_organization": False, "description": None}
        if current is None
        else {k: current[k] for k in _TAX}
    )
    merged.update({k: v for k, v in given.items() if fields.has(k) and v is not None})
    if fields.has("description"):
        merged["description"] = given["description"]
    return merged


tax_by_code = database.code_lookup("taxes", live=False)


async def known_tax_codes(conn: Conn, org: uuid.UUID, wanted: Any) -> set[str]:
    """Which of `wanted` (a request's `tax_codes`, if a list of strings) are this
    organization's taxes; no query when nothing is asked."""
    if not isinstance(wanted, list) or not wanted or not all(is_text(c) for c in wanted):
        return set()
    rows = await conn.fetch(
        "SELECT code FROM taxes WHERE organization_id = $1 AND code = ANY($2::text[])",
        org,
        wanted,
    )
    return {r["code"] for r in rows}


async def taxes_by_codes(conn: Conn, org: uuid.UUID, codes: list[str]) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM taxes WHERE organization_id = $1 AND code = ANY($2::text[]) ORDER BY code",
        org,
        codes,
    )
    return list(rows)


_COLUMNS = ("code", "name", "rate", "description", "applied_to_organization")


async def delete_tax(conn: Conn, tax: asyncpg.Record) -> asyncpg.Record:
    """Delete the tax; customers and plans lose it, issued invoices keep their snapshot."""
    await conn.execute("DELETE FROM taxes WHERE id = $1", tax["id"])
    return tax


async def organization_taxes(conn: Conn, org: uuid.UUID) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT * FROM taxes WHERE organization_id = $1 AND applied_to_organization ORDER BY code",
        org,
    )
    return list(rows)


_TAX_LINKS = {
    "customer": ("customer_taxes", "customer_id"),
    "plan": ("plan_taxes", "plan_id"),
    "charge": ("charge_taxes", "charge_id"),
    "add_on": ("add_on_taxes", "add_on_id"),
}


async def taxes_of(
    conn: Conn, link: str, owner_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """The taxes linked to each customer, plan or charge (`link` names which)."""
    table, column = _TAX_LINKS[link]
    rows = await conn.fetch(
        f"SELECT l.{column} AS owner_id, t.* FROM {table} l JOIN taxes t ON t.id = l.tax_id "
        f"WHERE l.{column} = ANY($1::uuid[]) ORDER BY t.code",
        owner_ids,
    )
    out: dict[uuid.UUID, list[asyncpg.Record]] = {owner: [] for owner in owner_ids}
    for r in rows:
        out[r["owner_id"]].append(r)
    return out


async def replace_taxes_of(
    conn: Conn, link: str, owner_id: uuid.UUID, tax_ids: list[uuid.UUID]
) -> None:
    table, column = _TAX_LINKS[link]
    await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", owner_id)
    await conn.execute(
        f"INSERT INTO {table} ({column}, tax_id) SELECT $1, unnest($2::uuid[])", owner_id, tax_ids
    )


async def _parse(
    conn: Conn, org: uuid.UUID, raw: dict[str, Any], current: asyncpg.Record | None
) -> dict[str, Any]:
    return tax_fields(raw, current)


TAXES = code_keyed.CodeKeyed(
    "tax",
    "taxes",
    tax_by_code,
    _parse,
    _COLUMNS,
    delete_tax,
    database.each(tax_body),
    live=False,
)
