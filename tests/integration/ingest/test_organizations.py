"""`PUT /api/v1/organizations` through Lago's own client: settings kept and merged, checked
inputs, and a new timezone republished to the catalog with the subscriptions it moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from lago_python_client.models import (
    BillableMetric,
    Customer,
    Organization,
    OrganizationBillingConfiguration,
    Plan,
    Subscription,
    Tax,
)

from meterflow.catalog import CatalogKind

Call = Callable[..., Any]


async def test_organization_settings_update_and_merge(
    tenant: Any, call: Call, read_catalog: Call
) -> None:
    lago = tenant.client
    await call(
        lago.taxes.create, Tax(name="VAT", code="vat", rate=20.0, applied_to_organization=True)
    )
    await call(lago.taxes.create, Tax(name="Other", code="other", rate=5.0))
    await call(
        lago.billable_metrics.create,
        BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"),
    )
    await call(
        lago.plans.create,
        Plan(name="P", code="p", interval="monthly", amount_cents=100, amount_currency="EUR"),
    )
    await call(lago.customers.create, Customer(external_id="own-tz", timezone="Asia/Tokyo"))
    await call(lago.customers.create, Customer(external_id="org-tz"))
    for customer in ("own-tz", "org-tz"):
        await call(
            lago.subscriptions.create,
            Subscription(
                external_customer_id=customer, plan_code="p", external_id=f"sub-{customer}"
            ),
        )

    updated = await call(
        lago.organizations.update,
        Organization(
            default_currency="EUR",
            timezone="Europe/Paris",
            net_payment_term=30,
            billing_configuration=OrganizationBillingConfiguration(
                invoice_grace_period=3, invoice_footer="Thanks"
            ),
        ),
    )
    assert (updated.timezone, updated.net_payment_term) == ("Europe/Paris", 30)
    assert updated.billing_configuration.invoice_grace_period == 3
    assert updated.billing_configuration.document_locale == "en"

    again = await call(
        lago.organizations.update,
        Organization(
            default_currency="EUR",
            billing_configuration=OrganizationBillingConfiguration(document_locale="fr"),
        ),
    )
    assert again.timezone == "Europe/Paris", "a setting not sent keeps its value"
    assert (
        again.billing_configuration.invoice_grace_period,
        again.billing_configuration.invoice_footer,
    ) == (3, "Thanks")
    assert again.billing_configuration.document_locale == "fr"

    records = await read_catalog(11)
    organizations = [r for r in records if r.kind is CatalogKind.ORGANIZATION]
    assert [(r.version, r.body["timezone"]) for r in organizations][-1] == (3, "Europe/Paris")
    moved = [
        r.body["applicable_timezone"]
        for r in records
        if r.kind is CatalogKind.SUBSCRIPTION and r.body["external_customer_id"] == "org-tz"
    ]
    assert moved[-1] == "Europe/Paris", "the subscription on the organization's timezone moves"
    kept = [
        r.body["applicable_timezone"]
        for r in records
        if r.kind is CatalogKind.SUBSCRIPTION and r.body["external_customer_id"] == "own-tz"
    ]
    assert kept == ["Asia/Tokyo"], "a customer's own timezone is not republished"
    customers = [
        r.body["applicable_timezone"]
        for r in records
        if r.kind is CatalogKind.CUSTOMER and r.body["external_id"] == "org-tz"
    ]
    assert customers[-1] == "Europe/Paris"


async def test_organization_inputs_are_checked(tenant: Any, server: Any) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    url = server.url + "/api/v1/organizations"
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {
            "organization": {
                "timezone": "Mars/Olympus",
                "billing_configuration": {"invoice_grace_period": -1, "colour": "red"},
                "document_numbering": "per_planet",
            }
        }
        async with http.put(url, json=body) as response:
            assert response.status == 422
            assert (await response.json())["error_details"] == {
                "timezone": ["invalid_timezone"],
                "document_numbering": ["value_is_invalid"],
                "billing_configuration.colour": ["unknown_field"],
                "billing_configuration.invoice_grace_period": ["value_is_invalid"],
            }
        async with http.put(url, json={"organization": {}}) as response:
            found = (await response.json())["organization"]
        assert (found["timezone"], found["billing_configuration"]["invoice_grace_period"]) == (
            "UTC",
            0,
        )
        assert found["taxes"] == []
