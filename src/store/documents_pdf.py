"""The PDFs of invoices and credit notes (fpdf2), from the objects as the API shows them: the
issuer, the customer's billing information, the lines, the totals, and every date in the
customer's timezone."""

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


class _Document:
    """One A4 page: a title, lines of facts, the customer's billing block, a table of lines
    and right-aligned totals."""

    def __init__(self, title: str, issuer: str, customer: dict[str, Any]) -> None:
        self.tz = ZoneInfo(customer.get("applicable_timezone") or "UTC")
        self.pdf = FPDF(format="A4")
        self.pdf.set_title(_latin1(title))
        self.pdf.set_author(_latin1(issuer))
        self.pdf.add_page()
        self.pdf.set_font("Helvetica", "B", 18)
        self.pdf.cell(0, 10, _latin1(title), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font("Helvetica", "", 10)
        self.customer = customer

    def facts(self, *lines: str) -> None:
        for line in lines:
            self.pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(4)
        self.pdf.set_font("Helvetica", "B", 11)
        self.pdf.cell(0, 7, "Bill to", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font("Helvetica", "", 10)
        c = self.customer
        address: tuple[Any, ...] = (
            c.get("legal_name") or c.get("name") or c["external_id"],
            c.get("address_line1"),
            c.get("address_line2"),
            " ".join(p for p in (c.get("zipcode"), c.get("city")) if p),
            " ".join(p for p in (c.get("state"), c.get("country")) if p),
            c.get("email"),
            c.get("tax_identification_number"),
        )
        for part in address:
            if part:
                self.pdf.cell(0, 5, _latin1(part), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(4)

    def table(self, rows: list[tuple[str, str, str, str]]) -> None:
        widths = (90, 30, 25, 45)
        self.pdf.set_font("Helvetica", "B", 10)
        for width, title in zip(widths, ("Item", "Period", "Units", "Amount"), strict=True):
            self.pdf.cell(width, 7, title, border="B")
        self.pdf.ln()
        self.pdf.set_font("Helvetica", "", 9)
        for row in rows:
            for width, text in zip(widths, row, strict=True):
                self.pdf.cell(width, 6, _latin1(text)[:60])
            self.pdf.ln()
        self.pdf.ln(3)

    def fee_row(self, fee: dict[str, Any], cents: int, currency: str) -> tuple[str, str, str, str]:
        item = fee["item"]
        start, end = _local(fee["from_date"], self.tz), _local(fee["to_date"], self.tz)
        return (
            item.get("invoice_display_name") or item["name"],
            start if start == end else f"{start} - {end}",
            str(fee["units"]),
            money(cents, currency),
        )

    def totals(self, rows: list[tuple[str, int]], label: str, total: int, currency: str) -> bytes:
        for name, cents in rows:
            self.pdf.cell(145, 6, _latin1(name), align="R")
            self.pdf.cell(45, 6, money(cents, currency), align="R", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font("Helvetica", "B", 11)
        self.pdf.cell(145, 8, label, align="R")
        self.pdf.cell(45, 8, money(total, currency), align="R", new_x="LMARGIN", new_y="NEXT")
        return bytes(self.pdf.output())


def _tax_rows(applied_taxes: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(f"{t['tax_name']} ({t['tax_rate']}%)", t["amount_cents"]) for t in applied_taxes]


def render_invoice(invoice: dict[str, Any], issuer: str) -> bytes:
    """The PDF of an extended invoice body (`GET /invoices/{id}`'s `invoice`)."""
    currency = invoice["currency"]
    doc = _Document(f"Invoice {invoice['number']}", issuer, invoice["customer"])
    status = invoice["status"] + (" (VOID)" if invoice["status"] == "voided" else "")
    doc.facts(
        f"Issued by {issuer}",
        f"Issuing date {invoice['issuing_date']}   Due {invoice['payment_due_date']}",
        f"Status {status}   Payment {invoice['payment_status']}   Dates in {doc.tz.key}",
    )
    doc.table([doc.fee_row(f, f["amount_cents"], currency) for f in invoice.get("fees", [])])
    rows = [("Fees", invoice["fees_amount_cents"])]
    if invoice["coupons_amount_cents"]:
        rows.append(("Coupons", -invoice["coupons_amount_cents"]))
    rows.append(("Sub total excluding taxes", invoice["sub_total_excluding_taxes_amount_cents"]))
    rows.extend(_tax_rows(invoice.get("applied_taxes", [])))
    rows.append(("Sub total including taxes", invoice["sub_total_including_taxes_amount_cents"]))
    if invoice["credit_notes_amount_cents"]:
        rows.append(("Credit notes", -invoice["credit_notes_amount_cents"]))
    if invoice["prepaid_credit_amount_cents"]:
        rows.append(("Prepaid credits", -invoice["prepaid_credit_amount_cents"]))
    return doc.totals(rows, "Total due", invoice["total_amount_cents"], currency)


def render_credit_note(note: dict[str, Any], issuer: str) -> bytes:
    """The PDF of a credit note body (`GET /credit_notes/{id}`'s `credit_note`)."""
    currency = note["currency"]
    doc = _Document(f"Credit note {note['number']}", issuer, note["customer"])
    doc.facts(
        f"Issued by {issuer}",
        f"Issuing date {note['issuing_date']}   Invoice {note['invoice_number']}",
        f"Reason {note['reason']}   Credit {note['credit_status'] or '-'}   "
        f"Refund {note['refund_status'] or '-'}   Dates in {doc.tz.key}",
    )
    doc.table([doc.fee_row(i["fee"], i["amount_cents"], currency) for i in note["items"]])
    rows = [("Items", sum(i["amount_cents"] for i in note["items"]))]
    if note["coupons_adjustment_amount_cents"]:
        rows.append(("Coupons", -note["coupons_adjustment_amount_cents"]))
    rows.append(("Sub total excluding taxes", note["sub_total_excluding_taxes_amount_cents"]))
    rows.extend(_tax_rows(note["applied_taxes"]))
    rows.append(("Credited", note["credit_amount_cents"]))
    rows.append(("Refunded", note["refund_amount_cents"]))
    return doc.totals(rows, "Total", note["total_amount_cents"], currency)
