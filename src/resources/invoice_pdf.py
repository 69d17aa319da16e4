"""An invoice's PDF (fpdf2), from the invoice as the API shows it: the issuer, the
customer's billing information, the fees, coupons, taxes, credits and totals, and every
date in the customer's timezone."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF

from billing.money import minor_units


def _latin1(text: Any) -> str:
    """The core PDF fonts speak Latin-1: other characters print as '?'."""
    return str(text if text is not None else "").encode("latin-1", "replace").decode("latin-1")


def money(cents: int, currency: str) -> str:
    exponent = minor_units(currency)
    return f"{Decimal(cents).scaleb(-exponent):,.{exponent}f} {currency}"


def _local(instant: str | None, tz: ZoneInfo) -> str:
    if not instant:
        return ""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(tz).date().isoformat()


def render_invoice(invoice: dict[str, Any], issuer: str) -> bytes:
    """The PDF of an extended invoice body (`GET /invoices/{id}`'s `invoice`)."""
    customer = invoice["customer"]
    tz = ZoneInfo(customer.get("applicable_timezone") or "UTC")
    currency = invoice["currency"]
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Invoice {invoice['number']}"))
    pdf.set_author(_latin1(issuer))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(f"Invoice {invoice['number']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    status = invoice["status"] + (" (VOID)" if invoice["status"] == "voided" else "")
    for line in (
        f"Issued by {issuer}",
        f"Issuing date {invoice['issuing_date']}   Due {invoice['payment_due_date']}",
        f"Status {status}   Payment {invoice['payment_status']}   Dates in {tz.key}",
    ):
        pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    address = [
        customer.get("legal_name") or customer.get("name") or customer["external_id"],
        customer.get("address_line1"),
        customer.get("address_line2"),
        " ".join(p for p in (customer.get("zipcode"), customer.get("city")) if p),
        " ".join(p for p in (customer.get("state"), customer.get("country")) if p),
        customer.get("email"),
        customer.get("tax_identification_number"),
    ]
    for line in address:
        if line:
            pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    widths = (90, 30, 25, 45)
    for width, title in zip(widths, ("Item", "Period", "Units", "Amount"), strict=True):
        pdf.cell(width, 7, title, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for fee in invoice.get("fees", []):
        item = fee["item"]
        period = f"{_local(fee['from_date'], tz)} - {_local(fee['to_date'], tz)}"
        cells = (
            item.get("invoice_display_name") or item["name"],
            period if fee["from_date"] != fee["to_date"] else _local(fee["from_date"], tz),
            fee["units"],
            money(fee["amount_cents"], currency),
        )
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 6, _latin1(text)[:60])
        pdf.ln()
    pdf.ln(3)
    rows = [("Fees", invoice["fees_amount_cents"])]
    if invoice["coupons_amount_cents"]:
        rows.append(("Coupons", -invoice["coupons_amount_cents"]))
    rows.append(("Sub total excluding taxes", invoice["sub_total_excluding_taxes_amount_cents"]))
    for tax in invoice.get("applied_taxes", []):
        rows.append((f"{tax['tax_name']} ({tax['tax_rate']}%)", tax["amount_cents"]))
    rows.append(("Sub total including taxes", invoice["sub_total_including_taxes_amount_cents"]))
    if invoice["credit_notes_amount_cents"]:
        rows.append(("Credit notes", -invoice["credit_notes_amount_cents"]))
    if invoice["prepaid_credit_amount_cents"]:
        rows.append(("Prepaid credits", -invoice["prepaid_credit_amount_cents"]))
    for label, cents in rows:
        pdf.cell(145, 6, _latin1(label), align="R")
        pdf.cell(45, 6, money(cents, currency), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(145, 8, "Total due", align="R")
    total = money(invoice["total_amount_cents"], currency)
    pdf.cell(45, 8, total, align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
