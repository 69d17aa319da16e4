"""Revenue analytics through Lago's Python client, month by month over invoices the real
invoicer wrote (January and February 2026) and a one-off invoice paid today: every month of
the window present, finalized invoices only, amounts worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AddOn, Invoice, InvoiceFee, InvoiceFeesList, OneOffInvoice

from gateway.organizations import create_organization
from integration.invoicer.conftest import kit, start_invoicer, utc
from meterflow.settings import Settings

__all__ = ["kit", "start_invoicer"]


def _month(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}-01T00:00:00.000Z"


def _nonzero(rows: Any, *fields: str) -> dict[str, tuple[Any, ...]]:
    """Each month with an amount, and the fields asked of it."""
    return {r.month: tuple(getattr(r, f) for f in fields) for r in rows if r.amount_cents}


async def test_monthly_revenue_reports(
    kit: Any, start_invoicer: Any, settings: Settings, server: Any, call: Any
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    catalog = await kit.catalog(organization_id=org.id, subscription_at=utc(2026, 1, 1))
    # January: 10.00 subscription + 100 units x 0.05, issued 1 February; February: 10.00,
    # issued 1 March. Both unpaid, due on their issuing date: overdue.
    standard = catalog.usage(catalog.standard_charge, "standard", 100)
    await kit.publish(
        catalog.closed(utc(2026, 1, 1), utc(2026, 2, 1), [standard]),
        catalog.closed(utc(2026, 2, 1), utc(2026, 3, 1), []),
    )
    async with start_invoicer():
        await kit.wait_for_invoices(2)
    await call(
        lago.add_ons.create,
        AddOn(name="Setup", code="setup", amount_cents=10000, amount_currency="EUR"),
    )
    one_off = await call(
        lago.invoices.create,
        OneOffInvoice(
            external_customer_id=catalog.external_customer_id,
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=2)]),
        ),
    )
    await call(lago.invoices.update, Invoice(payment_status="succeeded"), one_off.lago_id)
    today = datetime.now(UTC)
    now = _month(today.year, today.month)
    feb, mar = _month(2026, 2), _month(2026, 3)
    invoices = {
        i.issuing_date[:7]: i.lago_id for i in (await call(lago.invoices.find_all))["invoices"]
    }

    gross = (await call(lago.gross_revenues.find_all, {"currency": "EUR"}))["gross_revenues"]
    assert len(gross) == 12 and gross[-1].month == now, "twelve months, the current one last"
    assert _nonzero(gross, "amount_cents", "invoices_count") == {
        feb: (1500, 1),
        mar: (1000, 1),
        now: (20000, 1),
    }
    collections = (await call(lago.invoice_collections.find_all, {"months": 12}))[
        "invoice_collections"
    ]
    assert len(collections) == 36, "each month in each payment status"
    assert _nonzero(collections, "payment_status", "amount_cents") == {
        feb: ("pending", 1500),
        mar: ("pending", 1000),
        now: ("succeeded", 20000),
    }
    usages = (await call(lago.invoiced_usages.find_all))["invoiced_usages"]
    ((month, (code, cents)),) = _nonzero(usages, "code", "amount_cents").items()
    assert (month, code.startswith("api_calls_"), cents) == (feb, True, 500)
    mrrs = (await call(lago.mrrs.find_all))["mrrs"]
    assert _nonzero(mrrs, "amount_cents") == {feb: (1000,), mar: (1000,)}
    overdue = (await call(lago.overdue_balances.find_all))["overdue_balances"]
    assert _nonzero(overdue, "amount_cents", "lago_invoice_ids") == {
        feb: (1500, [invoices["2026-02"]]),
        mar: (1000, [invoices["2026-03"]]),
    }

    january = await call(lago.invoices.find, invoices["2026-02"])
    paid = await call(lago.invoices.find, one_off.lago_id)
    assert (january.payment_overdue, paid.payment_overdue) == (True, False)

    # Narrowed: two months, another customer.
    recent = (await call(lago.gross_revenues.find_all, {"months": 2}))["gross_revenues"]
    assert [r.month for r in recent][-1] == now and len(recent) == 2
    nobody = await call(lago.gross_revenues.find_all, {"external_customer_id": "nobody"})
    assert _nonzero(nobody["gross_revenues"]) == {}
    for options, field in (({"currency": "eur"}, "currency"), ({"months": "0"}, "months")):
        try:
            await call(lago.mrrs.find_all, options)
            raise AssertionError(f"{options} was answered")
        except LagoApiError as exc:
            assert exc.status_code == 422 and field in exc.response["error_details"], options
