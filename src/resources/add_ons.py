"""`/api/v1/add_ons`: one-off charges (create, list, find, update, delete) that one-off
invoices bill; `tax_codes` become the add-on's own taxes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from meterflow import db
from meterflow.db import Conn
from resources import crud, taxes
from resources.taxes import check_tax_codes, tax_body
from web.context import context, organization
from web.errors import NotFound
from web.payload import (
    Fields,
    currency,
    iso,
    ok,
    page_params,
    pagination_meta,
    read_wrapped,
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
_COLUMNS = ("name", "code", "invoice_display_name", "description", "amount_cents")


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


async def _body(conn: Conn, row: asyncpg.Record) -> dict[str, Any]:
    found = await taxes.taxes_of(conn, "add_on", [row["id"]])
    return add_on_body(row, found[row["id"]])


def _parse(raw: dict[str, Any], current: asyncpg.Record | None) -> dict[str, Any]:
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
        else {k: current[k] for k in (*_COLUMNS, "amount_currency")}
    )
    merged.update({k: v for k, v in given.items() if fields.has(k) and v is not None})
    for nullable in ("invoice_display_name", "description"):
        if fields.has(nullable):
            merged[nullable] = given[nullable]
    return merged


async def _set_taxes(conn: Conn, org: uuid.UUID, add_on_id: uuid.UUID, codes: list[str]) -> None:
    found = await taxes.taxes_by_codes(conn, org, sorted(set(codes)))
    await taxes.replace_taxes_of(conn, "add_on", add_on_id, [t["id"] for t in found])


async def _check_taxes(conn: Conn, org: uuid.UUID, raw: dict[str, Any]) -> None:
    check_tax_codes(
        raw.get("tax_codes"), await taxes.known_tax_codes(conn, org, raw.get("tax_codes"))
    )


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "add_on")
    columns = _parse(raw, None)
    async with db.unit_of_work(ctx.db) as conn:
        await _check_taxes(conn, org.id, raw)
        await crud.claim_code(conn, org.id, "add_on", columns["code"], add_on)
        row = await conn.fetchrow(
            "INSERT INTO add_ons (id, organization_id, name, code, invoice_display_name, "
            "description, amount_cents, amount_currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "RETURNING *",
            uuid.uuid4(),
            org.id,
            *(columns[k] for k in (*_COLUMNS, "amount_currency")),
        )
        assert row is not None
        if columns.get("tax_codes") is not None:
            await _set_taxes(conn, org.id, row["id"], columns["tax_codes"])
        body = await _body(conn, row)
    return ok({"add_on": body})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "add_on")
    async with db.unit_of_work(ctx.db) as conn:
        current = await crud.locked_by_code(conn, request, "add_on", add_on)
        columns = _parse(raw, current)
        await _check_taxes(conn, org.id, raw)
        if columns["code"] != current["code"]:
            await crud.claim_code(conn, org.id, "add_on", columns["code"], add_on)
        row = await conn.fetchrow(
            "UPDATE add_ons SET name = $2, code = $3, invoice_display_name = $4, description = $5, "
            "amount_cents = $6, amount_currency = $7, updated_at = now() WHERE id = $1 RETURNING *",
            current["id"],
            *(columns[k] for k in (*_COLUMNS, "amount_currency")),
        )
        assert row is not None
        if columns.get("tax_codes") is not None:
            await _set_taxes(conn, org.id, row["id"], columns["tax_codes"])
        body = await _body(conn, row)
    return ok({"add_on": body})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await add_on(conn, org.id, request.match_info["code"])
        if row is None:
            raise NotFound("add_on")
        body = await _body(conn, row)
    return ok({"add_on": body})


async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        bodies, total = await list_add_ons(conn, org.id, per_page, (page - 1) * per_page)
    return ok({"add_ons": bodies, "meta": pagination_meta(page, per_page, total)})


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


async def destroy(request: web.Request) -> web.Response:
    """Delete the add-on (soft: issued invoices keep their fees of it)."""
    ctx = context(request)
    async with db.unit_of_work(ctx.db) as conn:
        row = await crud.locked_by_code(conn, request, "add_on", add_on)
        body = await _body(conn, row)
        await conn.execute("UPDATE add_ons SET deleted_at = now() WHERE id = $1", row["id"])
    return ok({"add_on": body})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/add_ons", create),
        web.get("/api/v1/add_ons", find_all),
        web.get("/api/v1/add_ons/{code}", find),
        web.put("/api/v1/add_ons/{code}", update),
        web.delete("/api/v1/add_ons/{code}", destroy),
    ]
