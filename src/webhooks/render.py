"""The object a webhook carries, rendered as the API shows it, for the webhooks queued
without one (the invoicer writes an invoice and its webhooks in one SQL statement)."""

from __future__ import annotations

import uuid
from typing import Any

from meterflow.db import Conn
from read_model.invoices import extended_body


async def render(conn: Conn, object_type: str, object_id: uuid.UUID) -> dict[str, Any] | None:
    """The object's API body now; None when it no longer exists."""
    if object_type == "invoice":
        invoice = await conn.fetchrow("SELECT * FROM invoices WHERE id = $1", object_id)
        return None if invoice is None else await extended_body(conn, invoice)
    return None
