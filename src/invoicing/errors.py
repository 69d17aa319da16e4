"""Errors of invoicing: a closed period that can never be invoiced as it is (a poison message)."""

from __future__ import annotations

from meterflow.errors import MeterflowError


class InvoicingError(MeterflowError):
    """Root of the errors invoicing raises on purpose."""


class PoisonMessage(InvoicingError):
    """A periods-closed message that can never be invoiced as it is.

    The invoicer sends it to the dead-letter topic with `reason` and the original payload, and
    commits its offset. Fix the cause (the catalog row, the charge properties, the producer)
    and republish the payload to periods-closed: `period_key` keeps the replay idempotent.
    Transient failures (Postgres unreachable) are not errors of this tree: the invoicer
    retries them with back-off and commits nothing meanwhile.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
