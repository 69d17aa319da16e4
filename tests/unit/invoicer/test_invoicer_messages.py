"""Reading periods-closed messages: anything unusable is a PoisonMessage with a reason."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from invoicer.settings import InvoicerSettings
from invoicing.closed_period import LateUsage, PeriodClosed, parse_message, parse_period_closed
from invoicing.errors import PoisonMessage
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


def late_message(**overrides: Any) -> dict[str, Any]:
    closed = message()
    del closed["adjustments"], closed["terminated"]
    late: dict[str, Any] = {
        **closed,
        "type": "late_usage",
        "late_key": f"{closed['period_key']}:late:7",
    }
    late.update(overrides)
    return late


def test_messages_are_read_by_their_type() -> None:
    assert isinstance(parse_message(orjson.dumps(message())), PeriodClosed)
    assert isinstance(parse_message(orjson.dumps(message(type="period_closed"))), PeriodClosed)
    late = parse_message(orjson.dumps(late_message()))
    assert isinstance(late, LateUsage)
    assert late.late_key.endswith(":late:7")
    assert late.charges[0].units == Decimal("12.5")
    # A later invoice bills it as one adjustment of its period.
    assert late.adjustments[0].period_start == late.period_start
    assert late.adjustments[0].charges == late.charges


@pytest.mark.parametrize(
    "raw",
    [
        late_message(late_key=None),
        late_message(period_key=3),
        late_message(charges=None),
        late_message(period_end="2025-01-01T00:00:00Z"),
        message(type="credit_note"),
    ],
)
def test_unusable_late_usage_is_poison(raw: dict[str, Any]) -> None:
    with pytest.raises(PoisonMessage) as caught:
        parse_message(orjson.dumps(raw))
    assert caught.value.reason == "invalid_message"
