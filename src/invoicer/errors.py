"""The invoicer's errors: poison messages (never retried) apart from transient failures."""

from __future__ import annotations

from meterflow.errors import MeterflowError


class InvoicerError(MeterflowError):
    """Root of the errors the invoicer raises on purpose."""


class PoisonMessage(InvoicerError):
    """A periods-closed message that can never be invoiced as it is.

    It goes to the dead-letter topic with `reason` and the original payload, and its offset
    is committed. Fix the cause (the catalog row, the charge properties, the producer) and
    republish the payload to periods-closed: `period_key` keeps the replay idempotent.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class DatabaseUnavailable(InvoicerError):
    """Postgres did not answer. The invoicer waits with back-off and retries the same
    message; no offset is committed meanwhile, so nothing is lost. Check DATABASE_URL and
    the server's health if it lasts."""
