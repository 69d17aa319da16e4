"""The PDFs of invoices and credit notes (fpdf2), from the objects as the API shows them: the
issuer, the customer's billing information, the lines, the totals, and every date in the
customer's timezone.

Text is set in DejaVu Sans (Debian's `fonts-dejavu-core`, embedded as a subset), which covers
Latin, Greek and Cyrillic scripts. A document with characters it lacks (Chinese, Japanese,
Korean) also embeds WenQuanYi Micro Hei (`fonts-wqy-microhei`) for them; loading it costs
about a second, so only such documents do. Without DejaVu, text is set in the core PDF fonts,
which print what is not Latin-1 as '?'; without WenQuanYi, those characters are left blank
(either logged once, with the fix)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import TTFFont

from billing.money import minor_units

log = logging.getLogger(__name__)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
UNICODE_FAMILY = "DejaVu"
_FACES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
CJK_FAMILY = "WenQuanYi"


def _text(value: Any) -> str:
    return str(value if value is not None else "")


def _latin1(value: Any) -> str:
    """The core PDF fonts speak Latin-1: other characters print as '?'."""
    return _text(value).encode("latin-1", "replace").decode("latin-1")


@functools.cache
def _unicode_faces(font_dir: Path) -> dict[str, Path] | None:
    faces = {style: font_dir / name for style, name in _FACES.items()}
    if all(path.is_file() for path in faces.values()):
        return faces
    log.warning(
        "pdf.font_missing dir=%s: invoices and credit notes print characters outside "
        "Latin-1 as '?'; install Debian's fonts-dejavu-core for every script they use",
        font_dir,
    )
    return None


@functools.cache
def _cjk_font(path: Path) -> Path | None:
    if path.is_file():
        return path
    log.warning(
        "pdf.cjk_font_missing path=%s: invoices and credit notes leave Chinese, Japanese and "
        "Korean characters blank; install Debian's fonts-wqy-microhei",
        path,
    )
    return None


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
        faces = _unicode_faces(FONT_DIR)
        self.family = "Helvetica"
        self.text: Callable[[Any], str] = _latin1
        if faces is not None:
            for style, path in faces.items():
                self.pdf.add_font(UNICODE_FAMILY, style, str(path))
            self.family, self.text = UNICODE_FAMILY, self._unicode_text
            font = self.pdf.fonts[UNICODE_FAMILY.lower()]
            assert isinstance(font, TTFFont)
            self.covered = font.cmap
        self.pdf.set_title(self.text(title))
        self.pdf.set_author(self.text(issuer))
        self.pdf.add_page()
        self.pdf.set_font(self.family, "B", 18)
        self.pdf.cell(0, 10, self.text(title), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font(self.family, "", 10)
        self.customer = customer

    def _unicode_text(self, value: Any) -> str:
        """The text as it is; the first character DejaVu lacks brings in the CJK fallback."""
        text = _text(value)
        if self.covered and any(ord(c) not in self.covered for c in text):
            self.covered = {}
            cjk = _cjk_font(CJK_FONT)
            if cjk is not None:
                self.pdf.add_font(CJK_FAMILY, "", str(cjk))
                self.pdf.set_fallback_fonts([CJK_FAMILY], exact_match=False)
        return text

    def facts(self, *lines: str) -> None:
        for line in lines:
            self.pdf.cell(0, 6, self.text(line), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(4)
        self.pdf.set_font(self.family, "B", 11)
        self.pdf.cell(0, 7, "Bill to", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font(self.family, "", 10)
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
                self.pdf.cell(0, 5, self.text(part), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(4)

    def table(self, rows: list[tuple[str, str, str, str]]) -> None:
        widths = (90, 30, 25, 45)
        self.pdf.set_font(self.family, "B", 10)
        for width, title in zip(widths, ("Item", "Period", "Units", "Amount"), strict=True):
            self.pdf.cell(width, 7, title, border="B")
        self.pdf.ln()
        self.pdf.set_font(self.family, "", 9)
        for row in rows:
            for width, text in zip(widths, row, strict=True):
                self.pdf.cell(width, 6, self.text(text)[:60])
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
            self.pdf.cell(145, 6, self.text(name), align="R")
            self.pdf.cell(45, 6, money(cents, currency), align="R", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font(self.family, "B", 11)
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
    if note["offset_amount_cents"]:
        rows.append(("Deducted from the invoice", note["offset_amount_cents"]))
    return doc.totals(rows, "Total", note["total_amount_cents"], currency)
