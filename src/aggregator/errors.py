"""Errors of the aggregator, under meterflow's root error."""

from __future__ import annotations

from meterflow.errors import MeterflowError


class AggregatorError(MeterflowError):
    """Root of the aggregator's own errors."""


class PoisonEvent(AggregatorError):
    """An event that can never be applied, however often it is retried.

    The worker sends it to the dead-letter topic with `reason` and goes on; the operator
    reads the dead-letter topic, fixes the producer or the catalog, and replays the event.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
