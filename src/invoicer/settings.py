"""The invoicer's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.settings import env_int, env_seconds


@dataclass(frozen=True, slots=True)
class InvoicerSettings:
    """How the invoicer consumes periods-closed and where its metrics listen.

    `fault` is for tests only: `kill_after_db_commit` makes the process SIGKILL itself
    right after an invoice commits and before its offset does.
    """

    group_id: str = "meterflow-invoicer"
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9103
    batch_size: int = 500
    db_pool_size: int = 8
    retry_initial: float = 0.2
    retry_max: float = 10.0
    finalize_interval: float = 30.0
    fault: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InvoicerSettings:
        env = os.environ if env is None else env
        return cls(
            group_id=env.get("METERFLOW_INVOICER_GROUP") or "meterflow-invoicer",
            metrics_host=env.get("METERFLOW_INVOICER_METRICS_HOST") or "0.0.0.0",
            metrics_port=env_int(env, "METERFLOW_INVOICER_METRICS_PORT", 9103, minimum=0),
            batch_size=env_int(env, "METERFLOW_INVOICER_BATCH", 500, minimum=1),
            db_pool_size=env_int(env, "METERFLOW_INVOICER_DB_POOL_SIZE", 8, minimum=1),
            retry_initial=env_seconds(env, "METERFLOW_INVOICER_RETRY_INITIAL", 0.2, minimum=0.01),
            retry_max=env_seconds(env, "METERFLOW_INVOICER_RETRY_MAX", 10.0, minimum=0.01),
            finalize_interval=env_seconds(
                env, "METERFLOW_INVOICER_FINALIZE_INTERVAL", 30.0, minimum=0.1
            ),
            fault=env.get("METERFLOW_INVOICER_FAULT") or None,
        )
