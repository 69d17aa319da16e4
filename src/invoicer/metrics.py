"""Prometheus metrics of one invoicer, in its own registry (tests run several per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from meterflow.service_metrics import ServiceMetrics

# Closed periods invoiced together, and how long a round's read, pricing and write took.
_ROUND_SIZES = (1, 5, 25, 100, 250, 500, 1000, 2000)
_ROUND_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From a few seconds (a grace-less close) to days (a long close grace, a paused invoicer).
_LAG_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)


class InvoicerMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.messages_done = self.counter(
            "invoicer_messages_done",
            "periods-closed messages finished (invoiced, duplicate or dead-lettered)",
        )
        self.invoices_issued = self.counter(
            "invoicer_invoices_issued", "Invoices written, by status", ["status"]
        )
        self.invoiced_cents = self.counter(
            "invoicer_invoiced_amount_cents",
            "Sum of total_amount_cents of the invoices written, by currency",
            ["currency"],
        )
        self.fees_written = self.counter(
            "invoicer_fees_written", "Fees written, by fee type", ["fee_type"]
        )
        self.duplicates = self.counter(
            "invoicer_duplicate_periods",
            "Closed periods already invoiced (redelivery or replay), skipped",
        )
        self.dead_lettered = self.counter(
            "invoicer_dead_lettered",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
        )
        self.failures = self.counter(
            "invoicer_failures",
            "Failed attempts, by kind (database_unavailable is retried, others are not)",
            ["kind"],
            zero=("kafka_unavailable", "credits_changed", "database_unavailable", "unexpected"),
        )
        self.finalized = self.counter(
            "invoicer_drafts_finalized", "Draft invoices finalized when their grace ended"
        )
        self.late_usage = self.counter(
            "invoicer_late_usage",
            "late_usage messages by outcome: refreshed (a draft), pending (for the next "
            "invoice), duplicate (applied before)",
            ["outcome"],
        )
        self.period_end_to_invoice = self.histogram(
            "invoicer_period_end_to_invoice_seconds",
            "Seconds from a period's end to its invoice being written",
            buckets=_LAG_BUCKETS,
        )
        self.round_invoices = self.histogram(
            "invoicer_round_invoices",
            "Invoices written by one round (one read and one write)",
            buckets=_ROUND_SIZES,
        )
        self.round_seconds = self.histogram(
            "invoicer_round_seconds",
            "Seconds of a round that wrote invoices: its read, pricing and write",
            buckets=_ROUND_SECONDS,
        )
