"""The Jinja environment of the console's templates and the values every page shows."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

import jinja2
from aiohttp import web

from billing.money import from_cents


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.filters["number"] = number
    env.filters["zip_self"] = lambda values: [(v, v) for v in values]
    return env


def money(cents: int | None, currency: str | None) -> str:
    """`12.34 USD` from integer minor units (Japanese yen have none: `1234 JPY`)."""
    if cents is None:
        return "-"
    if not currency:
        return f"{cents} (minor units)"
    return f"{from_cents(cents, currency):,} {currency}"


def number(value: str | int | Decimal | None) -> str:
    """Units as the aggregator sends them (decimal text), without a trailing `.0`."""
    if value is None:
        return "-"
    amount = Decimal(str(value))
    return f"{amount.normalize():f}" if amount != amount.to_integral() else f"{int(amount):,}"


def render(
    template: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> web.Response:
    html = environment().get_template(template).render(**values)
    response = web.Response(text=html, status=status, content_type="text/html", headers=headers)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def render_fragment(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)
