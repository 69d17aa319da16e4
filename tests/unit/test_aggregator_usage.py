"""METERFLOW_AGGREGATOR_URL: the aggregator workers that ingest and the webhooks service ask
for current usage, one or several, read the same way by both."""

from __future__ import annotations

import pytest

from meterflow.errors import ConfigurationError
from web.settings import IngestSettings
from webhooks.settings import WebhookSettings


def test_unset_it_names_the_workers_meterflow_aggregator_runs_here() -> None:
    assert IngestSettings.from_env({}).aggregator_urls == ("http://127.0.0.1:6066",)
    env = {"METERFLOW_AGGREGATOR_PORT": "7000", "METERFLOW_AGGREGATOR_WORKERS": "3"}
    assert IngestSettings.from_env(env).aggregator_urls == (
        "http://127.0.0.1:7000",
        "http://127.0.0.1:7001",
        "http://127.0.0.1:7002",
    )
    assert WebhookSettings.from_env(env) == WebhookSettings(
        aggregator_urls=IngestSettings.from_env(env).aggregator_urls
    )


def test_set_it_names_one_worker_or_several_separated_by_commas() -> None:
    env = {
        "METERFLOW_AGGREGATOR_URL": " http://a:6066/, https://b:6066 ,",
        "METERFLOW_AGGREGATOR_WORKERS": "3",
    }
    want = ("http://a:6066", "https://b:6066")
    assert IngestSettings.from_env(env).aggregator_urls == want
    assert WebhookSettings.from_env(env).aggregator_urls == want


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METERFLOW_AGGREGATOR_URL": "http://b:1,a:6066"}, "METERFLOW_AGGREGATOR_URL: 'a:6066'"),
        ({"METERFLOW_AGGREGATOR_WORKERS": "0"}, "METERFLOW_AGGREGATOR_WORKERS=0"),
        ({"METERFLOW_AGGREGATOR_PORT": "web"}, "METERFLOW_AGGREGATOR_PORT='web'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    for read in (IngestSettings.from_env, WebhookSettings.from_env):
        with pytest.raises(ConfigurationError, match=message):
            read(env)
