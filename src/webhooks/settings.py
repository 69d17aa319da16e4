"""The webhook worker's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.aggregator_usage import aggregator_urls
from meterflow.settings import setting, settings_from_env


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """How the worker delivers: `concurrency` requests in flight at most (`per_endpoint` for
    one endpoint, so that a slow one cannot take every slot), each given
    `timeout` seconds; a failed try waits `backoff_initial * 2**(tries - 1)` seconds (at most
    `backoff_max`) and the webhook fails for good after `max_attempts` tries.

    `fault` is for tests only: `kill_after_send` makes the process SIGKILL itself once a
    receiver answered, before the outcome is recorded.

    The service also checks usage alerts (`webhooks.alert_monitor`): every `alerts_interval`
    seconds, against the current usage the aggregator's workers at `aggregator_urls` answer.
    """

    metrics_host: str = setting("METERFLOW_WEBHOOKS_METRICS_HOST", "0.0.0.0")
    metrics_port: int = setting("METERFLOW_WEBHOOKS_METRICS_PORT", 9104)
    concurrency: int = setting("METERFLOW_WEBHOOKS_CONCURRENCY", 16, minimum=1)
    per_endpoint: int = setting("METERFLOW_WEBHOOKS_PER_ENDPOINT", 4, minimum=1)
    timeout: float = setting("METERFLOW_WEBHOOKS_TIMEOUT", 10.0, minimum=0.1)
    poll_interval: float = setting("METERFLOW_WEBHOOKS_POLL", 0.5, minimum=0.01)
    max_attempts: int = setting("METERFLOW_WEBHOOKS_MAX_ATTEMPTS", 6, minimum=1)
    backoff_initial: float = setting("METERFLOW_WEBHOOKS_BACKOFF_INITIAL", 5.0, minimum=0.01)
    backoff_max: float = setting("METERFLOW_WEBHOOKS_BACKOFF_MAX", 3600.0, minimum=0.01)
    db_pool_size: int = setting("METERFLOW_WEBHOOKS_DB_POOL_SIZE", 4, minimum=1)
    jwt_issuer: str = setting("METERFLOW_WEBHOOKS_JWT_ISSUER", "meterflow")
    alerts_interval: float = setting("METERFLOW_ALERTS_INTERVAL", 30.0, minimum=0.1)
    # METERFLOW_AGGREGATOR_URL: the workers asked for current usage (`aggregator_usage`)
    aggregator_urls: tuple[str, ...] = ("http://127.0.0.1:6066",)
    fault: str | None = setting("METERFLOW_WEBHOOKS_FAULT", None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if env is None else env
        return settings_from_env(cls, env, aggregator_urls=aggregator_urls(env))

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1)))
