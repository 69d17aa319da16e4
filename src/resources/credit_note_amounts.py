"""`POST /api/v1/credit_notes/estimate`: requests to `store.credit_note_amounts`, Lago JSON back."""

from __future__ import annotations

from aiohttp import web

from meterflow import db
from read_model.invoices import amount_due
from store import credit_note_amounts
from web.context import context, organization
from web.payload import Fields, ok, read_wrapped

ROUTES = web.RouteTableDef()


@ROUTES.post("/api/v1/credit_notes/estimate")
async def estimate(request: web.Request) -> web.Response:
    ctx, org = context(request), organization(request)
    fields = Fields(await read_wrapped(request, "credit_note"), {"invoice_id", "items"})
    invoice_id = fields.text("invoice_id", required=True)
    items = credit_note_amounts.parse_items(fields, fields.array("items", required=True) or [])
    fields.check()
    async with db.unit_of_work(ctx.db) as conn:
        invoice = await credit_note_amounts.creditable_invoice(conn, org.id, invoice_id)
        amounts, chosen = await credit_note_amounts.amounts_of(conn, invoice, items)
    paid, total = invoice["payment_status"] == "succeeded", amounts.total_cents
    return ok(
        {
            "estimated_credit_note": {
                "lago_invoice_id": str(invoice["id"]),
                "invoice_number": invoice["number"],
                "currency": invoice["currency"],
                "taxes_amount_cents": amounts.taxes_cents,
                "precise_taxes_amount_cents": str(amounts.taxes_precise),
                "taxes_rate": float(amounts.taxes_rate),
                "sub_total_excluding_taxes_amount_cents": amounts.sub_total_excluding_taxes_cents,
                "max_creditable_amount_cents": total,
                "max_refundable_amount_cents": total if paid else 0,
                "max_offsettable_amount_cents": 0 if paid else min(total, amount_due(invoice)),
                "coupons_adjustment_amount_cents": amounts.coupons_adjustment_cents,
                "precise_coupons_adjustment_amount_cents": str(amounts.coupons_adjustment_precise),
                "items": [
                    {"lago_fee_id": str(fee["id"]), "amount_cents": cents} for fee, cents in chosen
                ],
                "applied_taxes": credit_note_amounts.applied_taxes(invoice, amounts),
            }
        }
    )
