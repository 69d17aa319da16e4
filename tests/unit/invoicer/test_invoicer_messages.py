"""Reading periods-closed messages: anything unusable is a PoisonMessage with a reason."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from invoicer.closed_period import parse_period_closed
from invoicer.errors import PoisonMessage
from invoicer.settings import InvoicerSettings
from meterflow.errors import ConfigurationError


def message(**overrides: Any) -> dict[str, Any]:
    sub = str(uuid.uuid4())
    base: dict[str, Any] = {
        "period_key": f"{sub}:2026-01-01T00:00:00Z",
        "organization_id": str(uuid.uuid4()),
        "subscription_id": sub,
        "external_subscription_id": "sub",
        "external_customer_id": "cust",
        "plan_code": "p",
        "currency": "EUR",
        "period_start": "2026-01-01T00:00:00+00:00",
        "period_end": "2026-02-01T00:00:00Z",
        "terminated": False,
        "charges": [
            {
                "charge_id": str(uuid.uuid4()),
                "charge_model": "standard",
                "billable_metric_id": str(uuid.uuid4()),
                "billable_metric_code": "calls",
                "aggregation_type": "sum_agg",
                "units": "12.5",
                "events_count": 3,
                "aggregation": {"type": "sum_agg", "total": "12.5", "events_count": 3},
            }
        ],
        "adjustments": [],
        "closed_at": "2026-02-01T00:05:00Z",
    }
    base.update(overrides)
    return base


def test_a_valid_message_parses() -> None:
    parsed = parse_period_closed(orjson.dumps(message()))
    assert parsed.charges[0].units == Decimal("12.5")
    assert parsed.period_end.isoformat() == "2026-02-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_message"),
        (None, "invalid_message"),
        (orjson.dumps(message(period_start="yesterday")), "invalid_message"),
        (orjson.dumps(message(period_end="2026-02-01T00:00:00")), "invalid_message"),
        (orjson.dumps(message(period_end="2025-12-01T00:00:00Z")), "invalid_message"),
        (orjson.dumps(message(subscription_id="nope")), "invalid_message"),
        (orjson.dumps(message(currency=None)), "invalid_message"),
        (orjson.dumps(message(charges=[{"charge_id": 1}])), "invalid_message"),
        (orjson.dumps(message(charges="x")), "invalid_message"),
        (orjson.dumps(message(adjustments=[1])), "invalid_message"),
    ],
)
def test_unusable_messages_are_poison(raw: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_period_closed(raw)
    assert caught.value.reason == reason


def test_units_must_be_a_finite_decimal() -> None:
    bad = message()
    bad["charges"][0]["units"] = "NaN"
    with pytest.raises(PoisonMessage):
        parse_period_closed(orjson.dumps(bad))
    bad["charges"][0]["units"] = 12
    with pytest.raises(PoisonMessage):
        parse_period_closed(orjson.dumps(bad))


def test_settings_from_env() -> None:
    s = InvoicerSettings.from_env({"METERFLOW_INVOICER_METRICS_PORT": "0"})
    assert s.metrics_port == 0
    assert s.group_id == "meterflow-invoicer"
    assert InvoicerSettings.from_env({}).metrics_port == 9103
    with pytest.raises(ConfigurationError):
        InvoicerSettings.from_env({"METERFLOW_INVOICER_BATCH": "many"})
    with pytest.raises(ConfigurationError):
        InvoicerSettings.from_env({"METERFLOW_INVOICER_BATCH": "0"})
