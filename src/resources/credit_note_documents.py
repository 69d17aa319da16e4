"""A credit note's metadata (`/api/v1/credit_notes/{id}/metadata`: replace, merge, delete all,
delete one key) and its PDF (`POST /api/v1/credit_notes/{id}/download`: rendered once, then
served at a secret link as an invoice's is)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meterflow import db
from resources.document_files import base_url
from store import document_files
from store.credit_notes import note_body, note_row, parse_metadata
from store.documents_pdf import render_credit_note
from web.context import context, organization
from web.errors import ValidationFailed
from web.payload import Fields, ok, read_json


async def _metadata_input(request: web.Request) -> dict[str, str | None]:
    raw = await read_json(request)
    fields = Fields(raw if isinstance(raw, dict) else {}, {"metadata"})
    metadata = parse_metadata(fields)
    if metadata is None and not fields.errors:
        fields.add("metadata", "value_is_mandatory")
    fields.check()
    assert metadata is not None
    return metadata


async def _set_metadata(request: web.Request, change: Any) -> web.Response:
    """Apply `change(current) -> new` to the credit note's metadata and answer the result."""
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        note = await note_row(conn, org.id, request.match_info["lago_id"], lock=True)
        metadata = change(dict(note["metadata"] or {}))
        await conn.execute(
            "UPDATE credit_notes SET metadata = $2, updated_at = now() WHERE id = $1",
            note["id"],
            metadata or {},
        )
    return ok({"metadata": metadata})


async def replace_metadata(request: web.Request) -> web.Response:
    given = await _metadata_input(request)
    return await _set_metadata(request, lambda current: given)


async def merge_metadata(request: web.Request) -> web.Response:
    given = await _metadata_input(request)
    return await _set_metadata(request, lambda current: {**current, **given})


async def delete_metadata(request: web.Request) -> web.Response:
    return await _set_metadata(request, lambda current: None)


async def delete_metadata_key(request: web.Request) -> web.Response:
    key = request.match_info["key"]

    def without(current: dict[str, Any]) -> dict[str, Any]:
        if key not in current:
            raise ValidationFailed({"key": ["metadata_key_not_found"]})
        return {k: v for k, v in current.items() if k != key}

    return await _set_metadata(request, without)


async def download(request: web.Request) -> web.Response:
    """Render the credit note's PDF the first time (announced by `credit_note.generated`);
    answer the credit note with its `file_url`."""
    ctx, org = context(request), organization(request)
    async with db.unit_of_work(ctx.db) as conn:
        note = await note_row(conn, org.id, request.match_info["lago_id"], lock=True)
        body = await document_files.with_file(
            conn,
            org.id,
            "credit_notes",
            await note_body(conn, note),
            render_credit_note,
            base_url(request),
        )
    return ok({"credit_note": body})


def routes() -> list[web.RouteDef]:
    path = "/api/v1/credit_notes/{lago_id}"
    return [
        web.post(f"{path}/metadata", replace_metadata),
        web.patch(f"{path}/metadata", merge_metadata),
        web.delete(f"{path}/metadata", delete_metadata),
        web.delete(f"{path}/metadata/{{key}}", delete_metadata_key),
        web.post(f"{path}/download", download),
    ]
