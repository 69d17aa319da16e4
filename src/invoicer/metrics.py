"""Prometheus metrics of one invoicer, in its own registry (tests run several per process)."""

from __future__ import annotations

from meterflow.service_metrics import ServiceMetrics, counter, histogram

# Closed periods invoiced together, and how long a round's read, pricing and write took.
_ROUND_SIZES = (1, 5, 25, 100, 250, 500, 1000, 2000)
_ROUND_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From a few seconds (a grace-less close) to days (a long close grace, a paused invoicer).
_LAG_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)


class InvoicerMetrics(ServiceMetrics):
    messages_done = counter(
        "invoicer_messages_done",
        "periods-closed messages finished (invoiced, duplicate or dead-lettered)",
    )
    invoices_issued = counter("invoicer_invoices_issued", "Invoices written, by status", ["status"])
    invoiced_cents = counter(
        "invoicer_invoiced_amount_cents",
        "Sum of total_amount_cents of the invoices written, by currency",
        ["currency"],
    )
    fees_written = counter("invoicer_fees_written", "Fees written, by fee type", ["fee_type"])
    duplicates = counter(
        "invoicer_duplicate_periods",
        "Closed periods already invoiced (redelivery or replay), skipped",
    )
    dead_lettered = counter(
        "invoicer_dead_lettered",
        "Messages sent to the dead-letter topic, by reason",
        ["reason"],
    )
    failures = counter(
        "invoicer_failures",
        "Failed attempts, by kind (database_unavailable is retried, others are not)",
        ["kind"],
        zero=("kafka_unavailable", "credits_changed", "database_unavailable", "unexpected"),
    )
    finalized = counter(
        "invoicer_drafts_finalized", "Draft invoices finalized when their grace ended"
    )
    late_usage = counter(
        "invoicer_late_usage",
        "late_usage messages by outcome: refreshed (a draft), pending (for the next "
        "invoice), duplicate (applied before)",
        ["outcome"],
    )
    period_end_to_invoice = histogram(
        "invoicer_period_end_to_invoice_seconds",
        "Seconds from a period's end to its invoice being written",
        buckets=_LAG_BUCKETS,
    )
    round_invoices = histogram(
        "invoicer_round_invoices",
        "Invoices written by one round (one read and one write)",
        buckets=_ROUND_SIZES,
    )
    round_seconds = histogram(
        "invoicer_round_seconds",
        "Seconds of a round that wrote invoices: its read, pricing and write",
        buckets=_ROUND_SECONDS,
    )
