"""Add-ons' rules and SQL: one-off charges that one-off invoices bill; `tax_codes` become
the add-on's own taxes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from meterflow import db
from meterflow.db import Conn
from store import taxes
from store.taxes import check_tax_codes, tax_body
from web.payload import (
    Fields,
    currency,
    iso,
)

_FIELDS = {
    "name",
    "code",
    "invoice_display_name",
    "description",
    "amount_cents",
    "amount_currency",
    "tax_codes",
}


ADD_ON_COLUMNS = ("name", "code", "invoice_display_name", "description", "amount_cents")


def add_on_body(row: asyncpg.Record, taxes: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        "lago_id": str(row["id"]),
        "name": row["name"],
        "invoice_display_name": row["invoice_display_name"],
        "code": row["code"],
        "amount_cents": row["amount_cents"],
        "amount_currency": row["amount_currency"],
        "description": row["description"],
        "created_at": iso(row["created_at"]),
        "taxes": [tax_body(t) for t in taxes],
    }


async def add_on(
    conn: Conn, org: uuid.UUID, code: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The organization's live add-on called `code`."""
    return await conn.fetchrow(
        "SELECT * FROM add_ons WHERE organization_id = $1 AND code = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        org,
        code,
    )


async def add_on_with_taxes(conn: Conn, row: asyncpg.Record) -> dict[str, Any]:
    found = await taxes.taxes_of(conn, "add_on", [row["id"]])
    return add_on_body(row, found[row["id"]])


def parse_add_on(raw: dict[str, Any], current: asyncpg.Record | None) -> dict[str, Any]:
    """The add-on's columns after this input (all required on create); `tax_codes` too when
    given. Raises ValidationFailed naming every bad field."""
    fields = Fields(raw, _FIELDS)
    creating = current is None
    given: dict[str, Any] = {
        "name": fields.text("name", required=creating),
        "code": fields.text("code", required=creating),
        "invoice_display_name": fields.text("invoice_display_name"),
        "description": fields.text("description", max_length=10_000),
        "amount_cents": fields.integer("amount_cents", required=creating, minimum=0),
        "amount_currency": currency(fields, "amount_currency", required=creating),
        "tax_codes": fields.strings("tax_codes"),
    }
    fields.check()
    merged: dict[str, Any] = (
        {"invoice_display_name": None, "description": None}
        if current is None
        else {k: current[k] for k in (*ADD_ON_COLUMNS, "amount_currency")}
    )
    merged.update({k: v for k, v in given.items() if fields.has(k) and v is not None})
    for nullable in ("invoice_display_name", "description"):
        if fields.has(nullable):
            merged[nullable] = given[nullable]
    return merged


async def set_taxes(conn: Conn, org: uuid.UUID, add_on_id: uuid.UUID, codes: list[str]) -> None:
    found = await taxes.taxes_by_codes(conn, org, sorted(set(codes)))
    await taxes.replace_taxes_of(conn, "add_on", add_on_id, [t["id"] for t in found])


async def check_taxes(conn: Conn, org: uuid.UUID, raw: dict[str, Any]) -> None:
    check_tax_codes(
        raw.get("tax_codes"), await taxes.known_tax_codes(conn, org, raw.get("tax_codes"))
    )


async def list_add_ons(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of the organization's add-ons, newest first, and how many there are."""
    rows, total = await db.fetch_page(
        conn,
        "SELECT * FROM add_ons ",
        "WHERE organization_id = $1 AND deleted_at IS NULL ",
        (org,),
        order="created_at DESC, id",
        limit=limit,
        offset=offset,
    )
    found = await taxes.taxes_of(conn, "add_on", [r["id"] for r in rows])
    return [add_on_body(r, found[r["id"]]) for r in rows], total
