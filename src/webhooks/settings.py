"""The webhook worker's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.settings import env_int, env_seconds


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """How the worker delivers: `concurrency` requests in flight at most (`per_endpoint` for
    one endpoint, so that a slow one cannot take every slot), each given
    `timeout` seconds; a failed try waits `backoff_initial * 2**(tries - 1)` seconds (at most
    `backoff_max`) and the webhook fails for good after `max_attempts` tries.

    `fault` is for tests only: `kill_after_send` makes the process SIGKILL itself once a
    receiver answered, before the outcome is recorded.
    """

    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9104
    concurrency: int = 16
    per_endpoint: int = 4
    timeout: float = 10.0
    poll_interval: float = 0.5
    max_attempts: int = 6
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    db_pool_size: int = 4
    jwt_issuer: str = "meterflow"
    fault: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if env is None else env
        return cls(
            metrics_host=env.get("METERFLOW_WEBHOOKS_METRICS_HOST") or "0.0.0.0",
            metrics_port=env_int(env, "METERFLOW_WEBHOOKS_METRICS_PORT", 9104, minimum=0),
            concurrency=env_int(env, "METERFLOW_WEBHOOKS_CONCURRENCY", 16, minimum=1),
            per_endpoint=env_int(env, "METERFLOW_WEBHOOKS_PER_ENDPOINT", 4, minimum=1),
            timeout=env_seconds(env, "METERFLOW_WEBHOOKS_TIMEOUT", 10.0, minimum=0.1),
            poll_interval=env_seconds(env, "METERFLOW_WEBHOOKS_POLL", 0.5, minimum=0.01),
            max_attempts=env_int(env, "METERFLOW_WEBHOOKS_MAX_ATTEMPTS", 6, minimum=1),
            backoff_initial=env_seconds(
                env, "METERFLOW_WEBHOOKS_BACKOFF_INITIAL", 5.0, minimum=0.01
            ),
            backoff_max=env_seconds(env, "METERFLOW_WEBHOOKS_BACKOFF_MAX", 3600.0, minimum=0.01),
            db_pool_size=env_int(env, "METERFLOW_WEBHOOKS_DB_POOL_SIZE", 4, minimum=1),
            jwt_issuer=env.get("METERFLOW_WEBHOOKS_JWT_ISSUER") or "meterflow",
            fault=env.get("METERFLOW_WEBHOOKS_FAULT") or None,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1)))
