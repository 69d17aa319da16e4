"""Taxes on real invoices: the organization's defaults, a customer's own taxes, a plan's
taxes over both, Lago's rounding per tax, and invoices that keep what they applied."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import Customer, Plan, Tax

from gateway.organizations import create_organization
from meterflow.settings import Settings

from .conftest import call


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_invoices_bear_the_taxes_lago_would_choose(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    await call(
        lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0, applied_to_organization=True)
    )
    await call(lago.taxes.create, Tax(name="Reduced", code="reduced", rate=5.5))
    await call(lago.taxes.create, Tax(name="City", code="city", rate=1.25))

    plain = await kit.catalog(organization_id=org.id)
    own = await kit.catalog(organization_id=org.id)
    planned = await kit.catalog(organization_id=org.id)
    charged = await kit.catalog(organization_id=org.id)
    # The standard charge of this one has its own tax (a plan's charge `tax_codes`).
    await kit.db.execute(
        "INSERT INTO charge_taxes (charge_id, tax_id) SELECT $1::uuid, id FROM taxes "
        "WHERE code = 'city'",
        charged.standard_charge,
    )
    await call(
        lago.customers.create,
        Customer(external_id=own.external_customer_id, tax_codes=["reduced", "city"]),
    )
    await call(
        lago.customers.create,
        Customer(external_id=planned.external_customer_id, tax_codes=["city"]),
    )
    plan_code = await kit.db.fetchval("SELECT code FROM plans WHERE id = $1::uuid", planned.plan_id)
    await call(lago.plans.update, Plan(tax_codes=["reduced"]), plan_code)

    def january(catalog: Any) -> dict[str, Any]:
        return catalog.closed(
            utc(2026, 1, 15, 10),
            utc(2026, 2, 1),
            [
                catalog.usage(catalog.standard_charge, "standard", 1234),
                catalog.usage(catalog.graduated_charge, "graduated", 250),
            ],
        )

    await kit.publish(
        january(plain),
        january(own),
        planned.closed(utc(2026, 2, 1), utc(2026, 3, 1), []),
        january(charged),
    )
    async with start_invoicer():
        await kit.wait_for_invoices(4)

    async def invoice_of(catalog: Any) -> Any:
        listed = await call(
            lago.invoices.find_all, {"external_customer_id": catalog.external_customer_id}
        )
        return await call(lago.invoices.find, listed["invoices"][0].lago_id)

    # Fees of January (see test_invoicer_exactly_once): 548 + 6170 + 1850 = 8568.
    # Organization default, 20 %: 8568 x 0.20 = 1713.6 -> 1714; per fee 109.6 -> 110,
    # 1234.0, 370.0.
    found = await invoice_of(plain)
    assert (found.fees_amount_cents, found.taxes_amount_cents) == (8568, 1714)
    assert found.sub_total_excluding_taxes_amount_cents == 8568
    assert found.sub_total_including_taxes_amount_cents == 10282
    assert found.total_amount_cents == 10282
    assert [(t.tax_code, t.tax_rate, t.amount_cents) for t in found.applied_taxes.__root__] == [
        ("vat", 20.0, 1714)
    ]
    fees = found.fees.__root__
    assert [(f.taxes_amount_cents, f.taxes_rate) for f in fees] == [
        (110, 20.0),
        (1234, 20.0),
        (370, 20.0),
    ]
    assert fees[0].taxes_precise_amount == "1.096"
    assert [t.amount_cents for t in fees[0].applied_taxes.__root__] == [110]

    # The customer's own taxes replace the default; each tax rounds once over the invoice:
    # city 8568 x 0.0125 = 107.1 -> 107, reduced 8568 x 0.055 = 471.24 -> 471; 578 in all.
    found = await invoice_of(own)
    assert [(t.tax_code, t.amount_cents) for t in found.applied_taxes.__root__] == [
        ("city", 107),
        ("reduced", 471),
    ]
    assert (found.taxes_amount_cents, found.total_amount_cents) == (578, 8568 + 578)
    assert found.fees.__root__[1].taxes_rate == 6.75

    # The plan's taxes win over the customer's: February's 10.00 x 5.5 % = 0.55.
    found = await invoice_of(planned)
    assert [(t.tax_code, t.amount_cents) for t in found.applied_taxes.__root__] == [("reduced", 55)]
    assert (found.fees_amount_cents, found.taxes_amount_cents, found.total_amount_cents) == (
        1000,
        55,
        1055,
    )

    # A charge's own tax replaces the default on its fees only: VAT on 548 + 1850 = 2398,
    # x 0.20 = 479.6 -> 480; city on the standard charge's 6170 x 0.0125 = 77.125 -> 77.
    found = await invoice_of(charged)
    assert [(t.tax_code, t.amount_cents) for t in found.applied_taxes.__root__] == [
        ("city", 77),
        ("vat", 480),
    ]
    assert found.taxes_amount_cents == 557
    assert [(f.taxes_rate, f.taxes_amount_cents) for f in found.fees.__root__] == [
        (20.0, 110),
        (1.25, 77),
        (20.0, 370),
    ]

    # An issued invoice keeps the taxes it applied when a tax changes or goes.
    await call(lago.taxes.update, Tax(rate=10.0), "vat")
    await call(lago.taxes.destroy, "reduced")
    again = await invoice_of(plain)
    assert again.taxes_amount_cents == 1714
    assert again.applied_taxes.__root__[0].tax_rate == 20.0
    assert (await invoice_of(planned)).applied_taxes.__root__[0].tax_code == "reduced"
