"""`/api/v1/taxes` through Lago's own client, and taxes attached to customers and plans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, Charge, Charges, Customer, Plan, Tax

Call = Callable[..., Any]


async def test_tax_create_find_update_list_delete(tenant: Any, call: Call) -> None:
    lago = tenant.client
    vat = await call(
        lago.taxes.create,
        Tax(name="TVA", code="vat_fr", rate=20.0, applied_to_organization=True),
    )
    assert (vat.code, vat.rate, vat.applied_to_organization) == ("vat_fr", 20.0, True)
    assert vat.description is None
    reduced = await call(
        lago.taxes.create, Tax(name="Reduced", code="reduced", rate=5.5, description="food")
    )
    assert reduced.applied_to_organization is False

    found = await call(lago.taxes.find, "reduced")
    assert (found.lago_id, found.rate, found.description) == (reduced.lago_id, 5.5, "food")

    updated = await call(lago.taxes.update, Tax(rate=7.25, name="Reduced FR"), "reduced")
    assert (updated.lago_id, updated.rate, updated.name) == (reduced.lago_id, 7.25, "Reduced FR")
    assert updated.description == "food", "a field not sent keeps its value"

    listed = await call(lago.taxes.find_all, {"per_page": 1})
    assert listed["meta"]["total_count"] == 2
    assert len(listed["taxes"]) == 1

    deleted = await call(lago.taxes.destroy, "reduced")
    assert deleted.code == "reduced"
    with pytest.raises(LagoApiError) as missing:
        await call(lago.taxes.find, "reduced")
    assert missing.value.status_code == 404
    assert (await call(lago.taxes.find_all))["meta"]["total_count"] == 1


async def test_tax_errors_are_lagos(tenant: Any, server: Any) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def post(body: Any, path: str = "/api/v1/taxes") -> tuple[int, Any]:
            async with http.post(server.url + path, json=body) as response:
                return response.status, await response.json()

        status, body = await post({"tax": {"name": "VAT", "code": "vat", "rate": "20.0"}})
        assert status == 200 and body["tax"]["rate"] == 20.0, "the spec's string rate works"
        status, body = await post({"tax": {"name": "VAT", "code": "vat", "rate": 20}})
        assert (status, body["error_details"]) == (422, {"code": ["value_already_exist"]})
        status, body = await post({"tax": {"code": "x", "rate": "-1", "colour": 1}})
        assert status == 422
        assert body["error_details"] == {
            "colour": ["unknown_field"],
            "name": ["value_is_mandatory"],
            "rate": ["value_is_invalid"],
        }
        status, body = await post({"taxes": {}})
        assert (status, body["code"]) == (400, "bad_request")
        async with http.put(server.url + "/api/v1/taxes/nope", json={"tax": {}}) as response:
            assert response.status == 404
            assert (await response.json())["code"] == "tax_not_found"
        async with http.delete(server.url + "/api/v1/taxes/nope") as response:
            assert response.status == 404
        # A NUL byte cannot be stored in Postgres text: refused as invalid, never a 500.
        add_on = {"name": "a", "code": "a", "amount_cents": 1, "amount_currency": "EUR"}
        for path, root, fields in (
            ("/api/v1/customers", "customer", {"external_id": "c-nul"}),
            ("/api/v1/add_ons", "add_on", add_on),
        ):
            status, body = await post({root: {**fields, "tax_codes": ["\x00"]}}, path)
            assert (status, body["error_details"]) == (422, {"tax_codes": ["value_is_invalid"]})


async def test_customers_and_plans_carry_their_tax_codes(
    tenant: Any, call: Call, make_tenant: Callable[..., Any]
) -> None:
    lago = tenant.client
    await call(lago.taxes.create, Tax(name="TVA", code="vat_fr", rate=20.0))
    await call(lago.taxes.create, Tax(name="Local", code="local", rate=2.5))

    customer = await call(
        lago.customers.create, Customer(external_id="c1", tax_codes=["vat_fr", "local"])
    )
    assert sorted(t.code for t in customer.taxes.__root__) == ["local", "vat_fr"]
    kept = await call(lago.customers.create, Customer(external_id="c1", name="Ada"))
    assert len(kept.taxes.__root__) == 2, "an update without tax_codes keeps them"
    replaced = await call(lago.customers.create, Customer(external_id="c1", tax_codes=["local"]))
    assert [t.code for t in replaced.taxes.__root__] == ["local"]
    assert [t.code for t in (await call(lago.customers.find, "c1")).taxes.__root__] == ["local"]

    with pytest.raises(LagoApiError) as unknown:
        await call(lago.customers.create, Customer(external_id="c2", tax_codes=["nope"]))
    assert unknown.value.status_code == 404
    assert unknown.value.response["code"] == "tax_not_found"

    plan = await call(
        lago.plans.create,
        Plan(
            name="P",
            code="p",
            interval="monthly",
            amount_cents=100,
            amount_currency="EUR",
            tax_codes=["vat_fr"],
        ),
    )
    assert [t.code for t in plan.taxes.__root__] == ["vat_fr"]
    plan = await call(lago.plans.update, Plan(tax_codes=[]), "p")
    assert plan.taxes.__root__ == []
    with pytest.raises(LagoApiError) as unknown_on_plan:
        await call(lago.plans.update, Plan(tax_codes=["nope"]), "p")
    assert (unknown_on_plan.value.status_code, unknown_on_plan.value.response["code"]) == (
        404,
        "tax_not_found",
    )

    # A charge takes its own tax_codes; unknown ones are refused.
    metric = await call(
        lago.billable_metrics.create,
        BillableMetric(name="Calls", code="calls", aggregation_type="count_agg"),
    )
    charge = Charge(
        billable_metric_id=metric.lago_id,
        charge_model="standard",
        properties={"amount": "1"},
        tax_codes=["local"],
    )
    plan = await call(lago.plans.update, Plan(charges=Charges(__root__=[charge])), "p")
    assert [t.code for t in plan.charges.__root__[0].taxes.__root__] == ["local"]
    charge.tax_codes = ["nope"]
    with pytest.raises(LagoApiError) as bad_charge:
        await call(lago.plans.update, Plan(charges=Charges(__root__=[charge])), "p")
    assert (bad_charge.value.status_code, bad_charge.value.response["code"]) == (
        404,
        "tax_not_found",
    )

    # A deleted tax leaves the customers that had it.
    await call(lago.taxes.destroy, "local")
    assert (await call(lago.customers.find, "c1")).taxes.__root__ == []

    # Another organization neither sees nor uses these codes.
    stranger = await make_tenant("Globex")
    with pytest.raises(LagoApiError) as foreign:
        await call(stranger.client.taxes.find, "vat_fr")
    assert foreign.value.status_code == 404
    with pytest.raises(LagoApiError):
        await call(
            stranger.client.customers.create, Customer(external_id="x", tax_codes=["vat_fr"])
        )
