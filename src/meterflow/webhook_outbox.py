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
}

# The rows of one change, one per endpoint of the organization that takes its type. Used
# as is, or as a data-modifying CTE of a larger statement (the invoicer's invoice write,
# where `source` names the changed rows, "invoice inv, ", that the other fields read).
FAN_OUT = """
INSERT INTO webhooks (id, organization_id, webhook_endpoint_id, webhook_type, object_type,
    object_id, payload)
SELECT gen_random_uuid(), e.organization_id, e.id, {type}, {object_type}, {object_id}, {payload}
FROM {source}webhook_endpoints e
WHERE e.organization_id = {organization} AND (e.event_types IS NULL OR {type} = ANY(e.event_types))
"""

_EMIT = FAN_OUT.format(
    source="",
    type="$2::text",
    object_type="$3::text",
    object_id="$4::uuid",
    payload="$5::json",
    organization="$1::uuid",
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
