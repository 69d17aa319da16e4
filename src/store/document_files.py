"""The stored PDFs of invoices and credit notes: rendered once, on the first download (the
`.generated` webhook announces it, in the same transaction), then served to whoever holds
the `file_url`, a link with a secret token (as Lago's presigned links are), no API key."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from meterflow import webhook_outbox
from meterflow.db import Conn
from store import organizations

# The kind in the URL: its table, the key column, and the webhook announcing its PDF.
FILE_KINDS = {
    "invoices": ("invoice_files", "invoice_id", "invoice.generated"),
    "credit_notes": ("credit_note_files", "credit_note_id", "credit_note.generated"),
}


async def with_file(
    conn: Conn,
    organization_id: uuid.UUID,
    kind: str,
    body: dict[str, Any],
    render: Callable[[dict[str, Any], str], bytes],
    base_url: str,
) -> dict[str, Any]:
    """`body` (the object's API body) with the `file_url` of its PDF under `base_url`,
    rendering and storing it (with its webhook) the first time, in the caller's transaction
    (the object's row locked). Rendering takes about a tenth of a second (the font is
    parsed and subset): it runs in a thread, off the event loop."""
    table, column, webhook = FILE_KINDS[kind]
    object_id = uuid.UUID(body["lago_id"])
    token = await conn.fetchval(f"SELECT token FROM {table} WHERE {column} = $1", object_id)
    if token is None:
        issuer = (await organizations.organization_row(conn, organization_id))["name"]
        token = secrets.token_urlsafe(24)
        await conn.execute(
            f"INSERT INTO {table} ({column}, token, pdf) VALUES ($1, $2, $3)",
            object_id,
            token,
            await asyncio.to_thread(render, body, issuer),
        )
        body["file_url"] = f"{base_url}/files/{kind}/{object_id}/{token}.pdf"
        await webhook_outbox.emit(conn, organization_id, webhook, object_id, body)
    body["file_url"] = f"{base_url}/files/{kind}/{object_id}/{token}.pdf"
    return body


async def stored_pdf(conn: Conn, kind: str, raw_id: str, token: str) -> bytes | None:
    """The PDF a `file_url` names (`kind` as in the URL, the object's id, the secret token),
    or None: whoever holds the link may read it, nobody can guess it."""
    found = FILE_KINDS.get(kind)
    try:
        object_id = uuid.UUID(raw_id)
    except ValueError:
        return None
    if found is None:
        return None
    table, column, _ = found
    pdf: bytes | None = await conn.fetchval(
        f"SELECT pdf FROM {table} WHERE {column} = $1 AND token = $2", object_id, token
    )
    return pdf
