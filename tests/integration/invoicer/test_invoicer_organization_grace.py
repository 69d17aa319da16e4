"""The organization's invoice grace period is the default; a customer's own value, 0
included, overrides it. Its document_number_prefix starts its invoice numbers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import Organization, OrganizationBillingConfiguration

from gateway.organizations import create_organization
from meterflow.settings import Settings

from .conftest import call


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_the_organization_grace_period_is_the_default(
    kit: Any, settings: Settings, lago_api: Any, start_invoicer: Callable[..., Any]
) -> None:
    org, key = await create_organization(settings, "Acme", "UTC")
    lago = Client(api_key=key, api_url=lago_api.url)
    days = 100_000  # long enough that a February 2026 invoice is still in its grace period
    await call(
        lago.organizations.update,
        Organization(
            default_currency="EUR",
            document_number_prefix="ACME-2026",
            billing_configuration=OrganizationBillingConfiguration(invoice_grace_period=days),
        ),
    )
    inherits = await kit.catalog(organization_id=org.id)
    opts_out = await kit.catalog(organization_id=org.id, grace_days=0)
    other_org = await kit.catalog(org_name="Globex")
    await kit.publish(
        *(c.closed(utc(2026, 2, 1), utc(2026, 3, 1), []) for c in (inherits, opts_out, other_org))
    )
    async with start_invoicer():
        await kit.wait_for_invoices(3)
    rows = await kit.db.fetch(
        "SELECT customer_id::text, status, grace_until, number FROM invoices ORDER BY status"
    )
    by_customer = {r["customer_id"]: (r["status"], r["grace_until"]) for r in rows}
    assert by_customer[inherits.customer_id] == ("draft", utc(2026, 3, 1) + timedelta(days=days))
    assert by_customer[opts_out.customer_id] == ("finalized", None)
    assert by_customer[other_org.customer_id] == ("finalized", None)
    # The organization's document_number_prefix starts its invoice numbers.
    numbers = {r["customer_id"]: r["number"] for r in rows}
    assert numbers[inherits.customer_id].startswith("ACME-2026-")
    assert numbers[inherits.customer_id].endswith("-001")
    assert numbers[other_org.customer_id].startswith("GLO-")
