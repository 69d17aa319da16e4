"""Which invoice grace period applies: the customer's, else the organization's, else none."""

from __future__ import annotations

from typing import Any

import pytest

from invoicing.terms import grace_days


def bc(days: Any) -> dict[str, Any]:
    return {"billing_configuration": {"invoice_grace_period": days}}


@pytest.mark.parametrize(
    ("customer", "organization", "days"),
    [
        ({}, {}, 0),
        ({}, bc(3), 3),
        (bc(5), bc(3), 5),
        (bc(0), bc(3), 0),  # the customer's 0 is a value, not an absence
        (bc(None), bc(3), 3),
        ({"billing_configuration": {}}, bc(3), 3),
        (bc(True), bc(2), 2),  # not an integer: ignored
        (bc(-1), {}, 0),
        ({"billing_configuration": "x"}, {"billing_configuration": None}, 0),
    ],
)
def test_grace_period(customer: dict[str, Any], organization: dict[str, Any], days: int) -> None:
    assert grace_days(customer, organization) == days
