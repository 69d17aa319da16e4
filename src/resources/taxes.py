"""`/api/v1/taxes`: tax rates, and which of them apply by default.

Which taxes a fee bears, as Lago decides it: a charge's own taxes (its `tax_codes` in a
plan) on that charge's fees; otherwise the plan's taxes when the plan has any, else the
customer's when the customer has any, else the organization's defaults (the taxes
`applied_to_organization`). The invoicer reads the same tables when it prices an invoice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from resources import repository
from web.context import context, organization
from web.errors import NotFound, ValidationFailed
from web.payload import Fields, iso, ok, page_params, pagination_meta, read_wrapped

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
        and all(isinstance(c, str) for c in codes)
        and any(code not in known for code in codes)
    ):
        raise NotFound("tax")


def _tax_fields(raw: dict[str, Any], current: asyncpg.Record | None) -> dict[str, Any]:
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


async def create(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    columns = _tax_fields(await read_wrapped(request, "tax"), None)
    async with repository.unit_of_work(ctx.db) as conn:
        await repository.claim_name(conn, org.id, "tax", columns["code"])
        if await repository.tax(conn, org.id, columns["code"]) is not None:
            raise ValidationFailed({"code": ["value_already_exist"]})
        row = await repository.insert_tax(conn, org.id, columns)
    return ok({"tax": tax_body(row)})


async def update(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    raw = await read_wrapped(request, "tax")
    async with repository.unit_of_work(ctx.db) as conn:
        current = await repository.tax(conn, org.id, request.match_info["code"], lock=True)
        if current is None:
            raise NotFound("tax")
        columns = _tax_fields(raw, current)
        if columns["code"] != current["code"]:
            await repository.claim_name(conn, org.id, "tax", columns["code"])
            if await repository.tax(conn, org.id, columns["code"]) is not None:
                raise ValidationFailed({"code": ["value_already_exist"]})
        row = await repository.update_tax(conn, current["id"], columns)
    return ok({"tax": tax_body(row)})


async def find(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    async with ctx.db.acquire() as conn:
        row = await repository.tax(conn, org.id, request.match_info["code"])
    if row is None:
        raise NotFound("tax")
    return ok({"tax": tax_body(row)})


async def find_all(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    page, per_page = page_params(request)
    async with ctx.db.acquire() as conn:
        rows, total = await repository.list_taxes(conn, org.id, per_page, (page - 1) * per_page)
    return ok(
        {"taxes": [tax_body(r) for r in rows], "meta": pagination_meta(page, per_page, total)}
    )


async def destroy(request: web.Request) -> web.Response:
    """Delete the tax; customers and plans lose it, issued invoices keep their snapshot."""
    ctx, org = context(request), organization(request)
    async with repository.unit_of_work(ctx.db) as conn:
        row = await repository.tax(conn, org.id, request.match_info["code"], lock=True)
        if row is None:
            raise NotFound("tax")
        await repository.delete_tax(conn, row["id"])
    return ok({"tax": tax_body(row)})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/taxes", create),
        web.get("/api/v1/taxes", find_all),
        web.get("/api/v1/taxes/{code}", find),
        web.put("/api/v1/taxes/{code}", update),
        web.delete("/api/v1/taxes/{code}", destroy),
    ]
