"""`POST /invoices/preview` with `plan_code`: the first invoice of a subscription not made
yet, for a known customer or one given inline, and nothing of it written."""

from __future__ import annotations

from typing import Any

import asyncpg
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, InvoicePreview, Plan, Tax

Call = Any


async def _counts(db: asyncpg.Connection) -> tuple[int, ...]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM subscriptions), "
        "(SELECT count(*) FROM customers), (SELECT count(*) FROM invoice_sequences)"
    )
    assert row is not None
    return tuple(row)


async def test_plan_preview_prices_the_first_period_and_writes_nothing(
    tenant: Any, call: Call, db: asyncpg.Connection
) -> None:
    lago = tenant.client
    await call(lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0))
    await call(
        lago.customers.create,
        Customer(external_id="c-1", name="Ada", currency="EUR", tax_codes=["vat"]),
    )
    for code, cents, advance in (("arrears", 3000, False), ("advance", 1000, True)):
        await call(
            lago.plans.create,
            Plan(
                name=code,
                code=code,
                interval="monthly",
                amount_cents=cents,
                amount_currency="EUR",
                pay_in_advance=advance,
            ),
        )
    before = await _counts(db)

    # In arrears from 16 April (calendar): 15 of April's 30 days of 30.00 = 15.00, VAT 3.00.
    first = await call(
        lago.invoices.preview,
        InvoicePreview(
            customer=Customer(external_id="c-1"),
            plan_code="arrears",
            billing_time="calendar",
            subscription_at="2026-04-16T00:00:00Z",
        ),
    )
    assert (first.fees_amount_cents, first.taxes_amount_cents, first.total_amount_cents) == (
        1500,
        300,
        1800,
    )
    assert first.customer.external_id == "c-1"

    # In advance, anniversary, for a customer not made yet: the first month's 10.00 in advance.
    advance = await call(
        lago.invoices.preview,
        InvoicePreview(
            customer=Customer(external_id="new-1", name="Grace", timezone="Europe/Paris"),
            plan_code="advance",
            billing_time="anniversary",
            subscription_at="2026-02-10T09:00:00Z",
        ),
    )
    assert (advance.fees_amount_cents, advance.total_amount_cents) == (1000, 1000)
    (fee,) = advance.fees.__root__
    # From the start instant to the next anniversary, a Paris midnight.
    assert (fee.from_date, fee.to_date) == ("2026-02-10T09:00:00Z", "2026-03-09T23:00:00Z")
    assert await _counts(db) == before, "a preview writes nothing"

    try:
        await call(
            lago.invoices.preview,
            InvoicePreview(customer=Customer(external_id="c-1"), plan_code="nope"),
        )
        raise AssertionError("an unknown plan was previewed")
    except LagoApiError as exc:
        assert (exc.status_code, exc.response["code"]) == (404, "plan_not_found")
