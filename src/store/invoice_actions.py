"""What can be done to an issued invoice: void it, change its payment status and metadata,
and download its PDF (`file_url`, a secret link served without an API key, as Lago's
presigned links are). Each change and its webhook commit together."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from meterflow.db import Conn
from read_model.invoices import extended_body
from store import document_files
from store.documents_pdf import render_invoice
from web.payload import INVALID, Fields, iso

UPDATE_FIELDS = {"payment_status", "metadata"}


_METADATA = {"id", "key", "value"}


VOID_FIELDS = {"generate_credit_note", "refund_amount", "credit_amount"}


def parse_metadata(fields: Fields, raw: list[Any], current: list[dict[str, Any]]) -> list[Any]:
    """The invoice's metadata after this input: an item with `id` updates that entry, one
    without is added; entries not named are dropped (Lago replaces the list)."""
    by_id = {m["lago_id"]: m for m in current}
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            fields.add(f"metadata.{i}", INVALID)
            continue
        entry = Fields(item, _METADATA, prefix=f"metadata.{i}.")
        key = entry.text("key", required=True)
        value = entry.text("value", required=True, max_length=140)
        known = by_id.get(item.get("id") or "")
        fields.merge(entry.errors)
        out.append(
            {
                "lago_id": known["lago_id"] if known else str(uuid.uuid4()),
                "key": key,
                "value": value,
                "created_at": known["created_at"] if known else iso(datetime.now(UTC)),
            }
        )
    return out


async def invoice_file(
    conn: Conn, org: uuid.UUID, invoice: asyncpg.Record, base_url: str
) -> dict[str, Any]:
    """The invoice's extended body with the `file_url` of its PDF (under `base_url`),
    rendered and stored the first time (in the caller's transaction, the invoice row
    locked); a draft's body comes without one."""
    body = await extended_body(conn, invoice)
    if invoice["status"] == "draft":
        return body
    return await document_files.with_file(conn, org, "invoices", body, render_invoice, base_url)
