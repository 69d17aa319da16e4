"""`GET /api/v1/analytics/...`: Lago's monthly revenue reports, from `read_model.analytics`."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from read_model import analytics
from web.context import context, organization
from web.errors import ValidationFailed
from web.payload import INVALID, ok

ROUTES = web.RouteTableDef()

_CURRENCY = re.compile(r"[A-Z]{3}")
# Path, the report's key in the answer, whether it takes `external_customer_id`.
_REPORTS = (
    ("gross_revenue", "gross_revenues", True),
    ("invoice_collection", "invoice_collections", False),
    ("invoiced_usage", "invoiced_usages", False),
    ("mrr", "mrrs", False),
    ("overdue_balance", "overdue_balances", True),
)


def _window(request: web.Request, per_customer: bool) -> analytics.Window:
    q = request.query
    errors: dict[str, list[str]] = {}
    currency = q.get("currency") or None
    if currency is not None and not _CURRENCY.fullmatch(currency):
        errors["currency"] = [INVALID]
    raw_months = q.get("months") or "12"
    if not raw_months.isdigit() or not 1 <= int(raw_months) <= 120:
        errors["months"] = [INVALID]
    if errors:
        raise ValidationFailed(errors)
    today = datetime.now(ZoneInfo(organization(request).timezone or "UTC")).date()
    customer = (q.get("external_customer_id") or None) if per_customer else None
    return analytics.Window(today, int(raw_months), currency, customer)


def _route(path: str, key: str, per_customer: bool) -> None:
    async def answer(request: web.Request) -> web.Response:
        window = _window(request, per_customer)
        async with context(request).db.acquire() as conn:
            rows = await analytics.report(conn, organization(request).id, key, window)
        return ok({key: rows})

    ROUTES.get(f"/api/v1/analytics/{path}")(answer)


for _path, _key, _per_customer in _REPORTS:
    _route(_path, _key, _per_customer)
