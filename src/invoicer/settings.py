"""The invoicer's own settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.settings import setting, settings_from_env


@dataclass(frozen=True, slots=True)
class InvoicerSettings:
    """How the invoicer consumes periods-closed and where its metrics listen.

    `batch_size` messages are taken per poll; of those, up to `round_size` closed periods
    are invoiced together (one read, one write); 1 invoices each period on its own. A poll
    returns what the consumer fetched, about 1 MB (1,000 closed periods) per partition: a
    batch of 8,000 takes every partition's share at the default 4 partitions, so each has a
    round in flight (Postgres works on one partition's write while Python prices another's).

    `fault` is for tests only: `kill_after_db_commit` makes the process SIGKILL itself
    right after an invoice commits and before its offset does.
    """

    group_id: str = setting("METERFLOW_INVOICER_GROUP", "meterflow-invoicer")
    metrics_host: str = setting("METERFLOW_INVOICER_METRICS_HOST", "0.0.0.0")
    metrics_port: int = setting("METERFLOW_INVOICER_METRICS_PORT", 9103)
    batch_size: int = setting("METERFLOW_INVOICER_BATCH", 8000, minimum=1)
    round_size: int = setting("METERFLOW_INVOICER_ROUND_SIZE", 1000, minimum=1)
    db_pool_size: int = setting("METERFLOW_INVOICER_DB_POOL_SIZE", 8, minimum=1)
    retry_initial: float = setting("METERFLOW_INVOICER_RETRY_INITIAL", 0.2, minimum=0.01)
    retry_max: float = setting("METERFLOW_INVOICER_RETRY_MAX", 10.0, minimum=0.01)
    finalize_interval: float = setting("METERFLOW_INVOICER_FINALIZE_INTERVAL", 30.0, minimum=0.1)
    fault: str | None = setting("METERFLOW_INVOICER_FAULT", None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InvoicerSettings:
        return settings_from_env(cls, env)
