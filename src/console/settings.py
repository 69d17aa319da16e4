"""The console's own settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meterflow.settings import setting, settings_from_env


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How long a session lasts, and how often the Usage tab's stream asks for new totals."""

    session_seconds: float = setting("METERFLOW_CONSOLE_SESSION_SECONDS", 12 * 3600.0, minimum=60.0)
    usage_interval: float = setting("METERFLOW_CONSOLE_USAGE_INTERVAL", 1.0, minimum=0.1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        return settings_from_env(cls, env)
