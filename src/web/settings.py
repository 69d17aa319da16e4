"""The ingest service's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.errors import ConfigurationError
from meterflow.settings import setting, settings_from_env

_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


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
    (SO_REUSEPORT, the kernel spreads connections); worker i serves its metrics on
    metrics_port + i.
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
    aggregator_url: str = "http://127.0.0.1:6066"
    usage_timeout: float = setting("METERFLOW_INGEST_USAGE_TIMEOUT", 5.0, minimum=0.001)
    workers: int = setting("METERFLOW_INGEST_WORKERS", 1, minimum=1)
    key_cache_seconds: float = setting("METERFLOW_INGEST_KEY_CACHE_SECONDS", 10.0, minimum=0.0)
    kafka_compression: str | None = "snappy"  # METERFLOW_INGEST_KAFKA_COMPRESSION ("none": None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        aggregator_url = env.get("METERFLOW_AGGREGATOR_URL") or "http://127.0.0.1:6066"
        settings = settings_from_env(
            cls,
            env,
            aggregator_url=aggregator_url.rstrip("/"),
            kafka_compression=_compression(
                env.get("METERFLOW_INGEST_KAFKA_COMPRESSION") or "snappy"
            ),
        )
        if settings.workers > 1 and settings.port == 0:
            raise ConfigurationError(
                "METERFLOW_INGEST_WORKERS > 1 needs a fixed METERFLOW_INGEST_PORT (not 0) "
                "for the workers to share"
            )
        return settings
