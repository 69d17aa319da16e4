"""Add-ons' rules and SQL: one-off charges that one-off invoices bill; `tax_codes` become
the add-on's own taxes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from meterflow.db import Conn
from store import code_keyed, database, taxes
from store.taxes import check_tax_codes, tax_body
from web.payload import Fields, currency, iso

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


add_on = database.code_lookup("add_ons", live=True)
_WRITTEN = (*ADD_ON_COLUMNS, "amount_currency")


async def render(conn: Conn, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """The add-ons' bodies, each with its taxes."""
    found = await taxes.taxes_of(conn, "add_on", [r["id"] for r in rows])
    return [add_on_body(r, found[r["id"]]) for r in rows]


async def add_on_with_taxes(conn: Conn, row: asyncpg.Record) -> dict[str, Any]:
    return (await render(conn, [row]))[0]


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


async def _parse(
    conn: Conn, org: uuid.UUID, raw: dict[str, Any], current: asyncpg.Record | None
) -> dict[str, Any]:
    columns = parse_add_on(raw, current)
    await check_taxes(conn, org, raw)
    return columns


async def _attach(
    conn: Conn, org: uuid.UUID, row: asyncpg.Record, columns: Mapping[str, Any]
) -> None:
    if columns.get("tax_codes") is not None:
        await set_taxes(conn, org, row["id"], columns["tax_codes"])


async def _delete(conn: Conn, current: asyncpg.Record) -> asyncpg.Record:
    """Soft: issued invoices keep their fees of it."""
    await conn.execute("UPDATE add_ons SET deleted_at = now() WHERE id = $1", current["id"])
    return current


ADD_ONS = code_keyed.CodeKeyed(
    "add_on",
    "add_ons",
    add_on,
    _parse,
    _WRITTEN,
    _delete,
    render,
    attach=_attach,
)


async def list_add_ons(
    conn: Conn, org: uuid.UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of the organization's add-ons, newest first, and how many there are."""
    return await code_keyed.page(ADD_ONS, conn, org, limit, offset)
