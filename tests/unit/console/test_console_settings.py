"""The console's settings: a malformed trusted-proxy list stops the start, naming the item."""

from __future__ import annotations

import ipaddress

import pytest

from console.settings import ConsoleSettings
from meterflow.errors import ConfigurationError


def test_trusted_proxies_are_addresses_or_networks() -> None:
    env = {"METERFLOW_CONSOLE_TRUSTED_PROXIES": " 10.0.0.0/8, ::1 ,"}
    assert ConsoleSettings.from_env(env).proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert ConsoleSettings.from_env({}).proxies == ()
    with pytest.raises(ConfigurationError, match=r"'proxy\.internal' is not an IP address"):
        ConsoleSettings.from_env({"METERFLOW_CONSOLE_TRUSTED_PROXIES": "10.0.0.1,proxy.internal"})
