"""The webhook outbox: one `webhooks` row per endpoint that wants the change, written by the
transaction of the change itself, so a webhook exists if and only if the change committed.
Shared by every part that changes what a webhook announces (resources, invoicer, read model);
`webhooks` delivers the rows."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from meterflow.db import Conn

log = logging.getLogger(__name__)

# Lago's webhook types that meterflow emits, with the object each carries.
WEBHOOK_TYPES = {
    "customer.created": "customer",
    "customer.updated": "customer",
    "subscription.started": "subscription",
    "subscription.terminated": "subscription",
    "invoice.drafted": "invoice",
    "invoice.created": "invoice",
    "invoice.one_off_created": "invoice",
    "invoice.voided": "invoice",
    "invoice.generated": "invoice",
    "invoice.payment_status_updated": "invoice",
    "credit_note.created": "credit_note",
    "credit_note.generated": "credit_note",
    "alert.triggered": "triggered_alert",
}


def fan_out(changes: str) -> str:
    """The statement writing the rows of some changes, one per endpoint of the change's
    organization that takes its type. `changes` is a SELECT of each change's
    organization_id, webhook_type, object_type, object_id and payload: one change from
    parameters (`emit`), or the invoices a larger statement writes (the invoicer's)."""
    return f"""
INSERT INTO webhooks (id, organization_id, webhook_endpoint_id, webhook_type, object_type,
    object_id, payload)
SELECT gen_random_uuid(), e.organization_id, e.id, c.webhook_type, c.object_type, c.object_id,
    c.payload
FROM ({changes}) c JOIN webhook_endpoints e ON e.organization_id = c.organization_id
WHERE e.event_types IS NULL OR c.webhook_type = ANY(e.event_types)
"""


_EMIT = fan_out(
    "SELECT $1::uuid AS organization_id, $2::text AS webhook_type, $3::text AS object_type, "
    "$4::uuid AS object_id, $5::json AS payload"
)


async def emit(
    conn: Conn,
    organization_id: uuid.UUID | str,
    webhook_type: str,
    object_id: uuid.UUID | str,
    body: dict[str, Any] | None = None,
) -> None:
    """Queue `webhook_type` about one object, inside the caller's transaction. `body` is the
    object as the API shows it; None lets the worker render it when it first sends."""
    object_type = WEBHOOK_TYPES[webhook_type]
    status = await conn.execute(
        _EMIT,
        uuid.UUID(str(organization_id)),
        webhook_type,
        object_type,
        uuid.UUID(str(object_id)),
        None if body is None else payload(webhook_type, organization_id, body),
    )
    queued = int(status.split()[-1])
    if queued:
        log.info(
            "webhook.queued type=%s object_id=%s organization_id=%s endpoints=%d",
            webhook_type,
            object_id,
            organization_id,
            queued,
        )


def payload(
    webhook_type: str, organization_id: uuid.UUID | str, body: dict[str, Any]
) -> dict[str, Any]:
    """Lago's webhook body: the type, the object's type, the organization, and the object
    under its type's name (`"invoice": {...}`)."""
    object_type = WEBHOOK_TYPES[webhook_type]
    return {
        "webhook_type": webhook_type,
        "object_type": object_type,
        "organization_id": str(organization_id),
        object_type: body,
    }
