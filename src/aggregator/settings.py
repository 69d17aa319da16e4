"""The aggregator's own settings, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from meterflow.errors import ConfigurationError
from meterflow.settings import setting, settings_from_env


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """How the aggregator batches, when it closes periods, and where it listens."""

    app_id: str = "meterflow-aggregator"
    host: str = setting("METERFLOW_AGGREGATOR_HOST", "127.0.0.1")
    port: int = setting("METERFLOW_AGGREGATOR_PORT", 6066)
    metrics_port: int = setting("METERFLOW_AGGREGATOR_METRICS_PORT", 9102)
    data_dir: Path = Path(".state/aggregator")
    batch_size: int = setting("METERFLOW_AGGREGATOR_BATCH_SIZE", 1000, minimum=1)
    # Seconds of events applied between two yields to the event loop (a batch is applied,
    # and made durable, in slices).
    slice_seconds: float = setting("METERFLOW_AGGREGATOR_SLICE_SECONDS", 0.02, minimum=0.0)
    batch_within: float = setting("METERFLOW_AGGREGATOR_BATCH_WITHIN", 0.02, minimum=0.0)
    clock_skew: float = setting("METERFLOW_AGGREGATOR_CLOCK_SKEW", 5.0, minimum=0.0)
    close_interval: float = setting("METERFLOW_AGGREGATOR_CLOSE_INTERVAL", 1.0, minimum=0.05)
    hold_window: float = setting("METERFLOW_AGGREGATOR_HOLD_WINDOW", 3600.0, minimum=0.0)
    late_window: float = setting("METERFLOW_AGGREGATOR_LATE_WINDOW", 30 * 86400.0, minimum=0.0)
    fetch_max_wait: float = setting("METERFLOW_AGGREGATOR_FETCH_MAX_WAIT", 0.1, minimum=0.001)
    commit_interval: float = setting("METERFLOW_AGGREGATOR_COMMIT_INTERVAL", 2.0, minimum=0.1)
    session_timeout: float = setting("METERFLOW_AGGREGATOR_SESSION_TIMEOUT", 30.0, minimum=1.0)
    # The consumer's static group membership (Kafka's group.instance.id): a worker restarted
    # under the same id takes its partitions back at once, instead of after the session
    # timeout of the member it replaces. Unique per worker; empty: "<app id>@<host>:<port>".
    instance_id: str = setting("METERFLOW_AGGREGATOR_INSTANCE_ID", "")
    # Where the tables live: "rocksdb" (on disk, the default) or "memory".
    store: str = setting("METERFLOW_AGGREGATOR_STORE", "rocksdb")
    # Seconds between two samples of where the event loop is (a thread of its own; 0: none),
    # so that a wake-up after over 100 ms of the loop's CPU is logged with what ran
    # (aggregator.loop_busy); 0.005 is a sample per GIL switch interval.
    loop_sample_every: float = setting("METERFLOW_AGGREGATOR_LOOP_SAMPLE_EVERY", 0.0, minimum=0.0)
    fault: str | None = setting("METERFLOW_AGGREGATOR_FAULT", None)  # tests only
    # Worker processes `meterflow aggregator` runs (`meterflow.workers`), one app: worker i
    # serves its web view on `port` + i and keeps its state in its own data directory.
    workers: int = setting("METERFLOW_AGGREGATOR_WORKERS", 1, minimum=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AggregatorSettings:
        env = os.environ if env is None else env
        prefix = env.get("METERFLOW_TOPIC_PREFIX", "meterflow.")
        state_dir = Path(env.get("METERFLOW_STATE_DIR") or ".state")
        data_dir = env.get("METERFLOW_AGGREGATOR_DATA_DIR") or state_dir / "aggregator"
        found = settings_from_env(
            cls,
            env,
            app_id=env.get("METERFLOW_AGGREGATOR_APP_ID") or f"{prefix}aggregator",
            data_dir=Path(data_dir).resolve(),
        )
        if found.store not in ("rocksdb", "memory"):
            raise ConfigurationError(
                f"METERFLOW_AGGREGATOR_STORE={found.store!r}: use 'rocksdb' (state on disk, "
                "the default) or 'memory' (state in RAM, rebuilt from the changelogs at every "
                "start)"
            )
        if found.workers > 1 and found.port == 0:
            raise ConfigurationError(
                f"METERFLOW_AGGREGATOR_WORKERS={found.workers} needs a fixed "
                "METERFLOW_AGGREGATOR_PORT: worker i listens on that port + i, where the "
                "others forward current-usage requests"
            )
        return found

    def worker(self, index: int) -> AggregatorSettings:
        """Worker `index`'s own settings among `workers`: its web view on `port` + index, its
        metrics on any free port (the supervising process serves them merged on
        `metrics_port`), and its state beside the first worker's (which keeps `data_dir`, so
        that a lone worker's state stays where it was)."""
        data_dir = (
            self.data_dir
            if index == 0
            else self.data_dir.with_name(f"{self.data_dir.name}-{index}")
        )
        instance_id = f"{self.instance_id}-{index}" if self.instance_id else ""
        return replace(
            self,
            port=self.port + index,
            metrics_port=0,
            data_dir=data_dir,
            instance_id=instance_id,
            workers=1,
        )
