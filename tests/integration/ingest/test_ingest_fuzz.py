"""Random JSON sent to the event endpoints never gets a 5xx: every answer is a 200 or a
4xx in Lago's shape (the real server, the real Kafka)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.service import IngestServer

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "2026-01-01T00:00:00Z", "1767225600.5", "sub-1", "\x00", "1e400"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
event_keys = st.sampled_from(
    [
        "transaction_id",
        "external_subscription_id",
        "code",
        "timestamp",
        "properties",
        "precise_total_amount_cents",
        "other",
    ]
)
event_like = st.dictionaries(event_keys, json_values, max_size=7)
bodies = st.one_of(
    json_values,
    st.builds(lambda e: {"event": e}, event_like),
    st.builds(lambda es: {"events": es}, st.lists(event_like | json_values, max_size=5)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, batch=st.booleans())
async def test_random_json_never_gets_a_5xx(
    server: IngestServer, tenant: Any, body: Any, batch: bool
) -> None:
    path = "/api/v1/events/batch" if batch else "/api/v1/events"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {tenant.api_key}"}) as session,
        session.post(
            server.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        answer = await response.json(content_type=None)
    assert response.status < 500, (body, answer)
    if response.status >= 400:
        assert set(answer) == {"status", "error", "code", "error_details"}
        assert answer["status"] == response.status


catalog_fields = {
    "/api/v1/customers": (
        "customer",
        [
            "external_id",
            "name",
            "currency",
            "timezone",
            "country",
            "billing_configuration",
            "shipping_address",
            "metadata",
            "net_payment_term",
            "tax_codes",
            "customer_type",
        ],
    ),
    "/api/v1/billable_metrics": (
        "billable_metric",
        [
            "name",
            "code",
            "aggregation_type",
            "field_name",
            "filters",
            "recurring",
            "weighted_interval",
            "rounding_precision",
        ],
    ),
    "/api/v1/plans": (
        "plan",
        [
            "name",
            "code",
            "interval",
            "amount_cents",
            "amount_currency",
            "pay_in_advance",
            "charges",
            "metadata",
            "trial_period",
            "bill_charges_monthly",
        ],
    ),
    "/api/v1/subscriptions": (
        "subscription",
        [
            "external_customer_id",
            "plan_code",
            "external_id",
            "billing_time",
            "subscription_at",
            "ending_at",
            "plan_overrides",
        ],
    ),
}
METRIC = "<the metric created by the test>"
range_like = st.dictionaries(
    st.sampled_from(["from_value", "to_value", "per_unit_amount", "flat_amount", "rate"]),
    json_values,
)
charge_like = st.fixed_dictionaries(
    {},
    optional={
        "billable_metric_id": st.just(METRIC) | json_values,
        "charge_model": st.sampled_from(["standard", "graduated", "package", "volume", "x"])
        | json_values,
        "properties": st.dictionaries(
            st.sampled_from(
                [
                    "amount",
                    "graduated_ranges",
                    "package_size",
                    "rate",
                    "volume_ranges",
                    "free_units",
                ]
            ),
            json_values | st.lists(range_like, max_size=3),
        ),
        "filters": json_values,
        "id": json_values,
    },
)


@st.composite
def catalog_requests(draw: st.DrawFn) -> tuple[str, Any]:
    path = draw(st.sampled_from(sorted(catalog_fields)))
    root, names = catalog_fields[path]
    values = json_values | st.lists(charge_like, max_size=3) if root == "plan" else json_values
    inner = draw(st.dictionaries(st.sampled_from(names), values, max_size=len(names)))
    return path, draw(st.sampled_from([{root: inner}, inner, {root: inner, "x": 1}]))


@pytest.fixture
async def metric_id(server: IngestServer, tenant: Any) -> str:
    """A real billable metric, so that random charges reach the charge-model validation."""
    body = {
        "billable_metric": {
            "name": "M",
            "code": "m",
            "aggregation_type": "sum_agg",
            "field_name": "v",
            "filters": [{"key": "k", "values": ["a"]}],
        }
    }
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {tenant.api_key}"}) as session,
        session.post(server.url + "/api/v1/billable_metrics", json=body) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    return str(answer["billable_metric"]["lago_id"])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=catalog_requests(), method=st.sampled_from(["POST", "PUT"]))
@example(  # found by this test: a list where a metric id belongs
    call=("/api/v1/plans", {"plan": {"name": [], "charges": [{"billable_metric_id": []}]}}),
    method="POST",
)
async def test_random_catalog_bodies_never_get_a_5xx(
    server: IngestServer, tenant: Any, metric_id: str, call: tuple[str, Any], method: str
) -> None:
    path, body = call
    body = json.loads(json.dumps(body).replace(json.dumps(METRIC), json.dumps(metric_id)))
    if method == "PUT":
        path += "/some-code"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {tenant.api_key}"}) as session,
        session.request(method, server.url + path, data=json.dumps(body).encode()) as response,
    ):
        answer = await response.json(content_type=None)
    assert response.status < 500, (path, body, answer)
    if response.status >= 400:
        assert set(answer) == {"status", "error", "code", "error_details"}
