"""The ingest service's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from meterflow.aggregator_usage import aggregator_urls
from meterflow.errors import ConfigurationError
from meterflow.settings import env_int, setting, settings_from_env

_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# `auto` workers: one per core this process may run on, at most this many (each worker has
# its own Postgres pool of up to METERFLOW_INGEST_DB_POOL_SIZE connections and producer).
MAX_AUTO_WORKERS = 4


def auto_workers() -> int:
    """Ingest processes for this machine: one per usable core, 1 to `MAX_AUTO_WORKERS`."""
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def _workers(env: Mapping[str, str], port: int) -> int:
    """METERFLOW_INGEST_WORKERS: a number, or `auto` (unset) for `auto_workers()`, which is
    1 on port 0 (workers share a fixed port)."""
    raw = (env.get("METERFLOW_INGEST_WORKERS") or "auto").strip().lower()
    if raw == "auto":
        return auto_workers() if port else 1
    return env_int(env, "METERFLOW_INGEST_WORKERS", 1, minimum=1)


def _compression(value: str) -> str | None:
    """A Kafka codec aiokafka knows, or None for `none`."""
    name = value.strip().lower() or "none"
    if name not in _COMPRESSIONS:
        raise ConfigurationError(
            f"METERFLOW_INGEST_KAFKA_COMPRESSION={value!r}: use one of {', '.join(_COMPRESSIONS)}"
        )
    return None if name == "none" else name


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Where the HTTP API and its metrics listen, and the limits it enforces.

    Port 0 means "any free port" (tests use it). `workers` processes share the API port
    (SO_REUSEPORT, the kernel spreads connections); with more than one, the command's own
    process serves all their metrics on metrics_port, each series labelled with its worker
    (`meterflow.workers`).
    """

    host: str = setting("METERFLOW_INGEST_HOST", "0.0.0.0")
    port: int = setting("METERFLOW_INGEST_PORT", 3000)
    metrics_port: int = setting("METERFLOW_INGEST_METRICS_PORT", 9101)
    max_batch: int = setting("METERFLOW_INGEST_MAX_BATCH", 100, minimum=1)
    produce_timeout: float = setting("METERFLOW_INGEST_PRODUCE_TIMEOUT", 10.0, minimum=0.001)
    db_pool_size: int = setting("METERFLOW_INGEST_DB_POOL_SIZE", 10, minimum=1)
    max_body_bytes: int = setting("METERFLOW_INGEST_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
    shutdown_grace: float = setting("METERFLOW_INGEST_SHUTDOWN_GRACE", 30.0, minimum=0.001)
    outbox_interval: float = setting("METERFLOW_INGEST_OUTBOX_INTERVAL", 5.0, minimum=0.001)
    # METERFLOW_AGGREGATOR_URL: the workers asked for current usage (`aggregator_usage`)
    aggregator_urls: tuple[str, ...] = ("http://127.0.0.1:6066",)
    usage_timeout: float = setting("METERFLOW_INGEST_USAGE_TIMEOUT", 5.0, minimum=0.001)
    workers: int = 1  # METERFLOW_INGEST_WORKERS: a number or `auto` (`_workers`)
    key_cache_seconds: float = setting("METERFLOW_INGEST_KEY_CACHE_SECONDS", 10.0, minimum=0.0)
    api_log_retention_days: int = setting("METERFLOW_API_LOG_RETENTION_DAYS", 30, minimum=1)
    kafka_compression: str | None = "snappy"  # METERFLOW_INGEST_KAFKA_COMPRESSION ("none": None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        settings = settings_from_env(
            cls,
            env,
            aggregator_urls=aggregator_urls(env),
            kafka_compression=_compression(
                env.get("METERFLOW_INGEST_KAFKA_COMPRESSION") or "snappy"
            ),
        )
        settings = replace(settings, workers=_workers(env, settings.port))
        if settings.workers > 1 and settings.port == 0:
            raise ConfigurationError(
                "METERFLOW_INGEST_WORKERS > 1 needs a fixed METERFLOW_INGEST_PORT (not 0) "
                "for the workers to share"
            )
        return settings
