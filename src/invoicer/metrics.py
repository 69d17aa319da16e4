"""Prometheus metrics of one invoicer, in its own registry (tests run several per process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

# From a few seconds (a grace-less close) to days (a long close grace, a paused invoicer).
_LAG_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)


@dataclass
class InvoicerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages_done = Counter(
            "invoicer_messages_done",
            "periods-closed messages finished (invoiced, duplicate or dead-lettered)",
            registry=r,
        )
        self.invoices_issued = Counter(
            "invoicer_invoices_issued", "Invoices written, by status", ["status"], registry=r
        )
        self.invoiced_cents = Counter(
            "invoicer_invoiced_amount_cents",
            "Sum of total_amount_cents of the invoices written, by currency",
            ["currency"],
            registry=r,
        )
        self.fees_written = Counter(
            "invoicer_fees_written", "Fees written, by fee type", ["fee_type"], registry=r
        )
        self.duplicates = Counter(
            "invoicer_duplicate_periods",
            "Closed periods already invoiced (redelivery or replay), skipped",
            registry=r,
        )
        self.dead_lettered = Counter(
            "invoicer_dead_lettered",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.failures = Counter(
            "invoicer_failures",
            "Failed attempts, by kind (database_unavailable is retried, others are not)",
            ["kind"],
            registry=r,
        )
        for kind in ("kafka_unavailable", "credits_changed", "database_unavailable", "unexpected"):
            self.failures.labels(kind)  # at 0 from the start, so rates and alerts see them
        self.finalized = Counter(
            "invoicer_drafts_finalized",
            "Draft invoices finalized when their grace ended",
            registry=r,
        )
        self.late_usage = Counter(
            "invoicer_late_usage",
            "late_usage messages by outcome: refreshed (a draft), pending (for the next "
            "invoice), duplicate (applied before)",
            ["outcome"],
            registry=r,
        )
        self.period_end_to_invoice = Histogram(
            "invoicer_period_end_to_invoice_seconds",
            "Seconds from a period's end to its invoice being written",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
