"""The ingest service's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.errors import ConfigurationError


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer; set it to a number") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number; set it to seconds") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={value} must be more than 0")
    return value


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Where the HTTP API and its metrics listen, and the limits it enforces.

    Port 0 means "any free port" (tests and benchmarks use it).
    """

    host: str = "0.0.0.0"
    port: int = 3000
    metrics_port: int = 9101
    max_batch: int = 100
    produce_timeout: float = 10.0
    db_pool_size: int = 10
    max_body_bytes: int = 1024 * 1024
    shutdown_grace: float = 30.0
    outbox_interval: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        return cls(
            host=env.get("INGEST_HOST") or "0.0.0.0",
            port=_int(env, "INGEST_PORT", 3000),
            metrics_port=_int(env, "INGEST_METRICS_PORT", 9101),
            max_batch=_int(env, "INGEST_MAX_BATCH", 100, minimum=1),
            produce_timeout=_float(env, "INGEST_PRODUCE_TIMEOUT", 10.0),
            db_pool_size=_int(env, "INGEST_DB_POOL_SIZE", 10, minimum=1),
            max_body_bytes=_int(env, "INGEST_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            shutdown_grace=_float(env, "INGEST_SHUTDOWN_GRACE", 30.0),
            outbox_interval=_float(env, "INGEST_OUTBOX_INTERVAL", 5.0),
        )
