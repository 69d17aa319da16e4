"""The Revenue page: the organization's last twelve months, per currency, from the same
reports as the API's analytics (`read_model.analytics`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from console.pages import PREFIX, api, show, signed_in
from console.sessions import Viewer
from read_model import analytics

ROUTES = web.RouteTableDef()

# The reports shown, each a column of the page.
_COLUMNS = ("gross_revenues", "mrrs", "invoiced_usages", "overdue_balances")


@ROUTES.get(f"{PREFIX}/revenue")
@signed_in
async def revenue_page(request: web.Request, viewer: Viewer) -> web.Response:
    org = viewer.organization
    window = analytics.Window(datetime.now(ZoneInfo(org.timezone or "UTC")).date(), 12)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    async with api(request).db.acquire() as conn:
        for name in _COLUMNS:
            for r in await analytics.report(conn, org.id, name, window):
                row = rows.setdefault(
                    (r["month"], r["currency"]),
                    {"month": r["month"][:7], "currency": r["currency"], "invoices": 0}
                    | dict.fromkeys(_COLUMNS, 0),
                )
                row[name] += r["amount_cents"]
                row["invoices"] += r.get("invoices_count", 0)
    months = sorted(rows.values(), key=lambda r: (r["month"], r["currency"]), reverse=True)
    return show(request, viewer, "revenue.html", section="revenue", months=months)
