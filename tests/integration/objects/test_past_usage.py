"""Past usage through Lago's Python client: a subscription's closed periods, newest first,
from the charge fees the real invoicer wrote, a period's late events (an adjustment on the
next invoice) counted in the period they happened in; paged, narrowed, and refused with
Lago's errors."""

from __future__ import annotations

from typing import Any

from lago_python_client.exceptions import LagoApiError

from gateway.organizations import create_organization
from integration.invoicer.conftest import kit, start_invoicer, utc
from meterflow.settings import Settings

__all__ = ["kit", "start_invoicer"]


def _lines(period: Any) -> dict[str, tuple[str, int, int]]:
    return {
        c.charge.lago_id: (c.units, c.events_count, c.amount_cents) for c in period.charges_usage
    }


async def test_past_usage_of_a_subscription(
    kit: Any, start_invoicer: Any, settings: Settings, server: Any, call: Any
) -> None:
    from lago_python_client.client import Client

    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=server.url)
    catalog = await kit.catalog(organization_id=org.id)
    graduated, standard = catalog.graduated_charge, catalog.standard_charge
    # January (from 15 Jan 10:00): 250 units graduated, 18.50. February: 40 standard units
    # (2.00), graduated 0 (1.00, the first tier's flat amount), and 10 late January units
    # billed on February's invoice as a 0.50 adjustment.
    await kit.publish(
        catalog.closed(
            utc(2026, 1, 15, 10),
            utc(2026, 2, 1),
            [catalog.usage(graduated, "graduated", 250)],
        ),
        catalog.closed(
            utc(2026, 2, 1),
            utc(2026, 3, 1),
            [catalog.usage(standard, "standard", 40), catalog.usage(graduated, "graduated", 0)],
            adjustments=[
                {
                    "period_start": utc(2026, 1, 15, 10).isoformat(),
                    "period_end": utc(2026, 2, 1).isoformat(),
                    "charges": [catalog.usage(graduated, "graduated", 10)],
                }
            ],
        ),
    )
    async with start_invoicer():
        await kit.wait_for_invoices(2)
    invoices = (await call(lago.invoices.find_all))["invoices"]

    customer, subscription = catalog.external_customer_id, catalog.external_subscription_id
    found = await call(lago.customers.past_usage, customer, subscription)
    periods = found["usage_periods"]
    assert [p.from_datetime for p in periods] == ["2026-02-01T00:00:00Z", "2026-01-15T10:00:00Z"]
    february, january = periods
    assert (february.amount_cents, february.total_amount_cents) == (300, 300)
    assert _lines(february) == {standard: ("40", 40, 200), graduated: ("0", 0, 100)}
    assert _lines(january) == {graduated: ("260", 260, 1900)}, "late units count in January"
    assert january.amount_cents == 1900
    assert {january.lago_invoice_id, february.lago_invoice_id} == {i.lago_id for i in invoices}
    assert january.charges_usage[0].billable_metric.code.startswith("api_calls")
    assert found["meta"]["total_count"] == 2

    newest = await call(lago.customers.past_usage, customer, subscription, {"periods_count": 1})
    assert [p.from_datetime for p in newest["usage_periods"]] == ["2026-02-01T00:00:00Z"]
    assert newest["meta"]["total_count"] == 1
    second_page = await call(
        lago.customers.past_usage, customer, subscription, {"per_page": 1, "page": 2}
    )
    assert [p.lago_invoice_id for p in second_page["usage_periods"]] == [january.lago_invoice_id]
    other_metric = await call(
        lago.customers.past_usage, customer, subscription, {"billable_metric_code": "gb"}
    )
    assert [p.charges_usage for p in other_metric["usage_periods"]] == [[], []]

    for args, status, expected in (
        ((customer, "sub-unknown"), 404, "subscription_not_found"),
        (("cust-unknown", subscription), 404, "customer_not_found"),
        ((customer, subscription, {"periods_count": "0"}), 422, "periods_count"),
    ):
        try:
            await call(lago.customers.past_usage, *args)
            raise AssertionError(f"{args} was answered")
        except LagoApiError as exc:
            assert exc.status_code == status, args
            assert expected in str(exc.response), exc.response
