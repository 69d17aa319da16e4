"""Invoice and credit note PDFs print every script their customers write in (DejaVu Sans,
embedded), and fall back to the core fonts' Latin-1, saying so, when the font is not installed."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pypdf
import pytest

from store import documents_pdf

NAME = "Łódź Ελλάδα Москва 東京 서울"


def _invoice() -> dict[str, Any]:
    return {
        "number": "MF-001-001",
        "currency": "EUR",
        "status": "finalized",
        "payment_status": "pending",
        "issuing_date": "2026-11-01",
        "payment_due_date": "2026-11-01",
        "customer": {
            "external_id": "cust-1",
            "name": NAME,
            "applicable_timezone": "Europe/Warsaw",
            "city": "Kraków",
        },
        "fees": [
            {
                "item": {"name": "Zapytania API"},
                "from_date": "2026-09-30T22:00:00Z",
                "to_date": "2026-10-31T22:59:59Z",
                "units": "1200.0",
                "amount_cents": 12000,
            }
        ],
        "fees_amount_cents": 12000,
        "coupons_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": 12000,
        "applied_taxes": [{"tax_name": "VAT", "tax_rate": 23.0, "amount_cents": 2760}],
        "sub_total_including_taxes_amount_cents": 14760,
        "credit_notes_amount_cents": 0,
        "prepaid_credit_amount_cents": 0,
        "total_amount_cents": 14760,
    }


def _text(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_every_script_prints() -> None:
    assert documents_pdf.FONT_DIR.is_dir(), "install Debian's fonts-dejavu-core (.ci/run does)"
    assert documents_pdf.CJK_FONT.is_file(), "install Debian's fonts-wqy-microhei (.ci/run does)"
    text = _text(documents_pdf.render_invoice(_invoice(), "Spółka Sp. z o.o."))
    assert NAME in text and "Kraków" in text and "Spółka" in text
    assert "147.60 EUR" in text and "VAT (23.0%)" in text
    assert "2026-10-01 - 2026-10-31" in text, "the fee's period in the customer's timezone"


def test_without_the_cjk_fallback_only_cjk_is_blank_and_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(documents_pdf, "CJK_FONT", tmp_path / "missing.ttf")
    with caplog.at_level(logging.WARNING, logger=documents_pdf.__name__):
        text = _text(documents_pdf.render_invoice(_invoice(), "Issuer"))
    assert "Łódź Ελλάδα Москва" in text and "東京" not in text
    assert "fonts-wqy-microhei" in caplog.text


def test_without_the_font_latin1_and_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(documents_pdf, "FONT_DIR", tmp_path)
    with caplog.at_level(logging.WARNING, logger=documents_pdf.__name__):
        text = _text(documents_pdf.render_invoice(_invoice(), "Issuer"))
    assert "?ód? ?????? ?????? ?? ??" in text and "Kraków" in text and "147.60 EUR" in text
    assert "fonts-dejavu-core" in caplog.text


def test_a_credit_note_prints_what_it_deducts_from_the_invoice() -> None:
    invoice = _invoice()
    note = {
        "number": "MF-001-001-CN001",
        "invoice_number": invoice["number"],
        "currency": "EUR",
        "issuing_date": "2026-11-02",
        "reason": "order_change",
        "credit_status": "available",
        "refund_status": None,
        "customer": invoice["customer"],
        "items": [{"fee": invoice["fees"][0], "amount_cents": 5000}],
        "coupons_adjustment_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": 5000,
        "applied_taxes": [{"tax_name": "VAT", "tax_rate": 23.0, "amount_cents": 1150}],
        "credit_amount_cents": 1150,
        "refund_amount_cents": 0,
        "offset_amount_cents": 5000,
        "total_amount_cents": 6150,
    }
    text = _text(documents_pdf.render_credit_note(note, "Issuer"))
    assert "Deducted from the invoice" in text and "50.00 EUR" in text and "61.50 EUR" in text
    note["offset_amount_cents"], note["credit_amount_cents"] = 0, 6150
    assert "Deducted" not in _text(documents_pdf.render_credit_note(note, "Issuer"))
