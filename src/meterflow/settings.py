"""Settings of the local stack and of the connections every service shares, read once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from meterflow.errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Integer setting `name`, or `default` when unset; ConfigurationError when malformed."""
    return _env_number(env, name, default, minimum, int, "an integer; set it to a number")


def env_seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    """Duration setting `name` in (decimal) seconds, or `default` when unset."""
    return _env_number(env, name, default, minimum, float, "a number; set it to seconds")


_Number = TypeVar("_Number", int, float)


def _env_number(
    env: Mapping[str, str],
    name: str,
    default: _Number,
    minimum: _Number,
    parse: Callable[[str], _Number],
    expected: str,
) -> _Number:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not {expected}") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


_T = TypeVar("_T")


def setting(variable: str, default: _T, *, minimum: float = 0) -> _T:
    """A field of a service's settings dataclass, read by `settings_from_env` from the
    environment `variable`: an int or float default makes it a number (a float one, seconds)
    of at least `minimum`; a str or None default takes the variable as it is, unset or
    empty meaning the default."""
    return field(default=default, metadata={"variable": variable, "minimum": minimum})


_Settings = TypeVar("_Settings", bound="DataclassInstance")


def settings_from_env(
    cls: type[_Settings], env: Mapping[str, str] | None = None, **computed: object
) -> _Settings:
    """The settings dataclass `cls` read from `env` (default: the process environment): each
    field declared with `setting` from its variable, `computed` ones as given, the rest at
    their defaults."""
    env = os.environ if env is None else env
    values = dict(computed)
    for f in fields(cls):
        variable = f.metadata.get("variable")
        if variable is None or f.name in values:
            continue
        minimum, default = f.metadata["minimum"], f.default
        if isinstance(default, bool):
            raise TypeError(f"{cls.__name__}.{f.name}: a setting is a number or a string")
        if isinstance(default, int):
            values[f.name] = env_int(env, variable, default, minimum=int(minimum))
        elif isinstance(default, float):
            values[f.name] = env_seconds(env, variable, default, minimum=float(minimum))
        else:
            values[f.name] = env.get(variable) or default
    return cls(**values)


class _Topic:
    """One topic of a `Topics`: its name after the deployment's prefix."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, topics: Topics, owner: type[Topics]) -> str:
        return f"{topics.prefix}{self.name}"


@dataclass(frozen=True, slots=True)
class Topics:
    """The Kafka topics of one meterflow deployment, all sharing one name prefix."""

    prefix: str = "meterflow."

    events = _Topic("events")
    catalog = _Topic("catalog")
    periods_closed = _Topic("periods-closed")
    dead_letter = _Topic("dead-letter")


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
