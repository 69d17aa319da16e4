"""Instants shown in a customer's timezone (else the organization's, else UTC), with the
same instant in the customer's, the organization's and UTC on hover or focus."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from markupsafe import Markup, escape


def offset_text(offset: timedelta | None) -> str:
    """`UTC+05:30`, `UTC-11:00`, `UTC+00:00`."""
    minutes = int((offset or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def parse(value: datetime | str | None) -> datetime | None:
    """An instant from a datetime or from the API's ISO text (`...Z`)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def local_text(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _row(label: str, instant: datetime, zone: str) -> str:
    local = instant.astimezone(ZoneInfo(zone))
    return (
        f'<span class="tz-row"><span class="tz-label">{escape(label)}</span> '
        f'<span class="tz-zone">{escape(zone)} {offset_text(local.utcoffset())}</span> '
        f'<span class="tz-time">{local.strftime("%Y-%m-%d %H:%M:%S")}</span></span>'
    )


class Dates:
    """Renders instants for one page: each in the timezone given (the customer's applicable
    one), with the organization's and UTC alongside."""

    def __init__(self, organization_timezone: str):
        self.organization_timezone = organization_timezone

    def show(self, value: datetime | str | None, zone: str | None = None) -> Markup:
        instant = parse(value)
        if instant is None:
            return Markup('<span class="muted">-</span>')
        zone = zone or self.organization_timezone or "UTC"
        rows = "".join(
            (
                _row("Customer", instant, zone),
                _row("Organization", instant, self.organization_timezone),
                _row("UTC", instant, "UTC"),
            )
        )
        iso = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Markup(
            f'<time class="when" datetime="{iso}" tabindex="0">{local_text(instant, zone)}'
            f'<span class="tz-card" role="tooltip">{rows}</span></time>'
        )


@functools.cache
def timezone_choices() -> tuple[tuple[str, str], ...]:
    """Every IANA zone with its current UTC offset, as (name, `name, UTC+hh:mm`)."""
    now = datetime.now(UTC)
    zones = sorted(z for z in available_timezones() if "/" in z or z == "UTC")
    out = []
    for name in zones:
        offset = now.astimezone(ZoneInfo(name)).utcoffset()
        out.append((name, f"{name}, {offset_text(offset)}"))
    return tuple(out)
