"""The console's own settings, read from the environment once at start."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.errors import ConfigurationError
from meterflow.settings import setting, settings_from_env

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How long a session lasts, how often the Usage tab's stream asks for new totals, and
    which reverse proxies' `X-Forwarded-For` names the client (for sign-in throttling)."""

    session_seconds: float = setting("METERFLOW_CONSOLE_SESSION_SECONDS", 12 * 3600.0, minimum=60.0)
    usage_interval: float = setting("METERFLOW_CONSOLE_USAGE_INTERVAL", 1.0, minimum=0.1)
    trusted_proxies: str = setting("METERFLOW_CONSOLE_TRUSTED_PROXIES", "")

    def __post_init__(self) -> None:
        trusted_networks(self.trusted_proxies)  # a malformed list fails at start

    @property
    def proxies(self) -> tuple[Network, ...]:
        return trusted_networks(self.trusted_proxies)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        return settings_from_env(cls, env)


@functools.cache
def trusted_networks(raw: str) -> tuple[Network, ...]:
    """`METERFLOW_CONSOLE_TRUSTED_PROXIES`: addresses or networks, separated by commas."""
    found = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"METERFLOW_CONSOLE_TRUSTED_PROXIES: {item!r} is not an IP address or network; "
                "set it to the proxies' addresses or CIDR networks separated by commas, "
                "e.g. 10.0.0.0/8,127.0.0.1"
            ) from None
    return tuple(found)
