"""Validation of catalog inputs that needs no database: metrics and customers."""

from __future__ import annotations

from typing import Any

import pytest

from store.billable_metrics import parse_metric
from store.customers import parse_customer
from web.errors import ValidationFailed


def _details(fn: Any, *args: Any) -> dict[str, Any]:
    with pytest.raises(ValidationFailed) as caught:
        fn(*args)
    return caught.value.error_details


@pytest.mark.parametrize(
    ("aggregation", "needs_field"),
    [
        ("count_agg", False),
        ("sum_agg", True),
        ("max_agg", True),
        ("unique_count_agg", True),
        ("weighted_sum_agg", True),
        ("latest_agg", True),
    ],
)
def test_field_name_is_required_where_the_aggregation_reads_one(
    aggregation: str, needs_field: bool
) -> None:
    raw = {"name": "M", "code": "m", "aggregation_type": aggregation}
    if needs_field:
        assert _details(parse_metric, raw) == {"field_name": ["value_is_mandatory"]}
        assert parse_metric({**raw, "field_name": "gb"})["field_name"] == "gb"
    else:
        assert parse_metric({**raw, "field_name": "ignored"})["field_name"] is None


def test_weighted_interval_defaults_for_weighted_sum_and_is_refused_elsewhere() -> None:
    weighted = parse_metric(
        {"name": "M", "code": "m", "aggregation_type": "weighted_sum_agg", "field_name": "v"}
    )
    assert weighted["weighted_interval"] == "seconds"
    raw = {"name": "M", "code": "m", "aggregation_type": "sum_agg", "field_name": "v"}
    assert _details(parse_metric, {**raw, "weighted_interval": "seconds"}) == {
        "weighted_interval": ["value_is_invalid"]
    }


def test_metric_filters_need_values_and_unique_keys() -> None:
    raw = {"name": "M", "code": "m", "aggregation_type": "count_agg"}
    assert _details(
        parse_metric,
        {
            **raw,
            "filters": [
                {"key": "r", "values": ["eu"]},
                {"key": "r", "values": ["us"]},
                {"key": "s", "values": []},
                "x",
            ],
        },
    ) == {
        "filters.1.key": ["value_already_exist"],
        "filters.2.values": ["value_is_mandatory"],
        "filters.3": ["value_is_invalid"],
    }


def test_metric_update_keeps_what_it_does_not_name() -> None:
    current = {"name": "M", "code": "m", "aggregation_type": "sum_agg", "field_name": "gb"}
    updated = parse_metric({"name": "N"}, current)
    assert updated == {**current, "name": "N"}
    assert _details(parse_metric, {"aggregation_type": "max_agg", "field_name": None}, current) == {
        "field_name": ["value_is_mandatory"]
    }


def test_customer_input_gives_only_the_fields_sent() -> None:
    external_id, given = parse_customer(
        {"external_id": "c", "country": "fr", "billing_configuration": {"sync": True}}
    )
    assert external_id == "c"
    assert given == {"country": "FR", "billing_configuration": {"sync": True}}


def test_customer_nested_errors_are_named_by_path() -> None:
    assert _details(
        parse_customer,
        {
            "external_id": "c",
            "country": "France",
            "billing_configuration": {"payment_provider": "paypal", "colour": 1},
            "shipping_address": {"country": "F"},
            "metadata": [{"key": "k"}],
            "tax_codes": ["vat"],
        },
    ) == {
        "country": ["value_is_invalid"],
        "billing_configuration.colour": ["unknown_field"],
        "billing_configuration.payment_provider": ["value_is_invalid"],
        "shipping_address.country": ["country_code_invalid"],
        "metadata.0.value": ["value_is_mandatory"],
        "tax_codes": ["tax_not_found"],
    }
