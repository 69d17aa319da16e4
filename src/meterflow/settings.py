"""Settings of the local stack and of the connections every service shares, read once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meterflow.errors import ConfigurationError


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Integer setting `name`, or `default` when unset; ConfigurationError when malformed."""
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


def env_seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    """Duration setting `name` in (decimal) seconds, or `default` when unset."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number; set it to seconds") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """The Kafka topics of one meterflow deployment, all sharing one name prefix."""

    prefix: str = "meterflow."

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def catalog(self) -> str:
        return f"{self.prefix}catalog"

    @property
    def periods_closed(self) -> str:
        return f"{self.prefix}periods-closed"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}dead-letter"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where Kafka and Postgres are, and how the embedded ones are run when none is given.

    `kafka_bootstrap` / `database_url` set to None mean "run the embedded one".
    """

    state_dir: Path
    kafka_bootstrap: str | None
    database_url: str | None
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int
    partitions: int
    topics: Topics
    db_schema: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state_dir = Path(env.get("METERFLOW_STATE_DIR") or ".state").resolve()
        partitions = env_int(env, "METERFLOW_PARTITIONS", 4, minimum=1)
        return cls(
            state_dir=state_dir,
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            database_url=env.get("DATABASE_URL") or None,
            kafka_port=env_int(env, "METERFLOW_KAFKA_PORT", 19092),
            kafka_controller_port=env_int(env, "METERFLOW_KAFKA_CONTROLLER_PORT", 19093),
            postgres_port=env_int(env, "METERFLOW_POSTGRES_PORT", 15432),
            partitions=partitions,
            topics=Topics(env.get("METERFLOW_TOPIC_PREFIX", "meterflow.")),
            db_schema=env.get("METERFLOW_DB_SCHEMA") or "public",
        )

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka to talk to: the one given, else the embedded broker's loopback address."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def dsn(self) -> str:
        """The Postgres to talk to: the one given, else the embedded server's."""
        return self.database_url or f"postgresql://postgres@127.0.0.1:{self.postgres_port}/postgres"
