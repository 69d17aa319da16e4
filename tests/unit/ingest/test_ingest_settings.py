"""IngestSettings read from the environment, with defaults and clear configuration errors."""

from __future__ import annotations

import os

import pytest

from meterflow.errors import ConfigurationError
from web.auth import key_digest, new_api_key
from web.settings import MAX_AUTO_WORKERS, IngestSettings, auto_workers


def test_defaults() -> None:
    s = IngestSettings.from_env({})
    assert (s.host, s.port, s.metrics_port, s.max_batch) == ("0.0.0.0", 3000, 9101, 100)


def test_from_env() -> None:
    s = IngestSettings.from_env(
        {
            "METERFLOW_INGEST_PORT": "8080",
            "METERFLOW_INGEST_METRICS_PORT": "9200",
            "METERFLOW_INGEST_PRODUCE_TIMEOUT": "2.5",
        }
    )
    assert (s.port, s.metrics_port, s.produce_timeout) == (8080, 9200, 2.5)


@pytest.mark.parametrize(
    "env",
    [
        {"METERFLOW_INGEST_PORT": "http"},
        {"METERFLOW_INGEST_MAX_BATCH": "0"},
        {"METERFLOW_INGEST_PRODUCE_TIMEOUT": "-1"},
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(env))):
        IngestSettings.from_env(env)


def test_api_keys_are_random_and_stored_as_sha256() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b and len(a) >= 40
    assert len(key_digest(a)) == 32 and key_digest(a) == key_digest(a) != key_digest(b)


def test_workers_default_to_one_per_core_and_need_a_fixed_port() -> None:
    cores = len(os.sched_getaffinity(0))
    assert IngestSettings.from_env({}).workers == max(1, min(MAX_AUTO_WORKERS, cores))
    assert IngestSettings.from_env({"METERFLOW_INGEST_WORKERS": "auto"}).workers == auto_workers()
    assert IngestSettings.from_env({"METERFLOW_INGEST_WORKERS": "3"}).workers == 3
    # `auto` on port 0 (tests: any free port) is one process: workers share a fixed port.
    assert IngestSettings.from_env({"METERFLOW_INGEST_PORT": "0"}).workers == 1
    with pytest.raises(ConfigurationError, match="METERFLOW_INGEST_WORKERS"):
        IngestSettings.from_env({"METERFLOW_INGEST_WORKERS": "0"})
    with pytest.raises(ConfigurationError, match="METERFLOW_INGEST_WORKERS"):
        IngestSettings.from_env({"METERFLOW_INGEST_WORKERS": "many"})
    with pytest.raises(ConfigurationError, match="METERFLOW_INGEST_PORT"):
        IngestSettings.from_env({"METERFLOW_INGEST_WORKERS": "2", "METERFLOW_INGEST_PORT": "0"})


@pytest.mark.parametrize(
    ("value", "codec"), [(None, "snappy"), ("", "snappy"), ("none", None), ("ZSTD", "zstd")]
)
def test_kafka_compression_defaults_to_snappy_and_none_turns_it_off(
    value: str | None, codec: str | None
) -> None:
    env = {} if value is None else {"METERFLOW_INGEST_KAFKA_COMPRESSION": value}
    assert IngestSettings.from_env(env).kafka_compression == codec


def test_an_unknown_kafka_compression_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="none, gzip, snappy, lz4, zstd"):
        IngestSettings.from_env({"METERFLOW_INGEST_KAFKA_COMPRESSION": "brotli"})
