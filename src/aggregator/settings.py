"""The aggregator's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meterflow.errors import ConfigurationError
from meterflow.settings import env_int, env_seconds


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """How the aggregator batches, when it closes periods, and where it listens."""

    app_id: str = "meterflow-aggregator"
    host: str = "127.0.0.1"
    port: int = 6066
    metrics_port: int = 9102
    data_dir: Path = Path(".state/aggregator")
    batch_size: int = 1000
    batch_within: float = 0.02
    clock_skew: float = 5.0
    close_interval: float = 1.0
    hold_window: float = 3600.0
    late_window: float = 30 * 86400.0
    fetch_max_wait: float = 0.1
    commit_interval: float = 2.0
    session_timeout: float = 30.0
    store: str = "rocksdb"  # where the tables live: "rocksdb" (on disk) or "memory"
    fault: str | None = None  # tests only

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AggregatorSettings:
        env = os.environ if env is None else env
        prefix = env.get("METERFLOW_TOPIC_PREFIX", "meterflow.")
        state_dir = Path(env.get("METERFLOW_STATE_DIR") or ".state")
        return cls(
            app_id=env.get("METERFLOW_AGGREGATOR_APP_ID") or f"{prefix}aggregator",
            host=env.get("METERFLOW_AGGREGATOR_HOST") or "127.0.0.1",
            port=env_int(env, "METERFLOW_AGGREGATOR_PORT", 6066),
            metrics_port=env_int(env, "METERFLOW_AGGREGATOR_METRICS_PORT", 9102),
            data_dir=Path(
                env.get("METERFLOW_AGGREGATOR_DATA_DIR") or state_dir / "aggregator"
            ).resolve(),
            batch_size=env_int(env, "METERFLOW_AGGREGATOR_BATCH_SIZE", 1000, minimum=1),
            batch_within=env_seconds(env, "METERFLOW_AGGREGATOR_BATCH_WITHIN", 0.02, minimum=0.0),
            clock_skew=env_seconds(env, "METERFLOW_AGGREGATOR_CLOCK_SKEW", 5.0, minimum=0.0),
            close_interval=env_seconds(
                env, "METERFLOW_AGGREGATOR_CLOSE_INTERVAL", 1.0, minimum=0.05
            ),
            hold_window=env_seconds(env, "METERFLOW_AGGREGATOR_HOLD_WINDOW", 3600.0, minimum=0.0),
            late_window=env_seconds(
                env, "METERFLOW_AGGREGATOR_LATE_WINDOW", 30 * 86400.0, minimum=0.0
            ),
            fetch_max_wait=env_seconds(
                env, "METERFLOW_AGGREGATOR_FETCH_MAX_WAIT", 0.1, minimum=0.001
            ),
            commit_interval=env_seconds(
                env, "METERFLOW_AGGREGATOR_COMMIT_INTERVAL", 2.0, minimum=0.1
            ),
            session_timeout=env_seconds(
                env, "METERFLOW_AGGREGATOR_SESSION_TIMEOUT", 30.0, minimum=1.0
            ),
            store=_store(env.get("METERFLOW_AGGREGATOR_STORE") or "rocksdb"),
            fault=env.get("METERFLOW_AGGREGATOR_FAULT") or None,
        )


def _store(value: str) -> str:
    if value not in ("rocksdb", "memory"):
        raise ConfigurationError(
            f"METERFLOW_AGGREGATOR_STORE={value!r}: use 'rocksdb' (state on disk, the "
            "default) or 'memory' (state in RAM, rebuilt from the changelogs at every start)"
        )
    return value
