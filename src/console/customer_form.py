"""The customer form: its fields, turned into the API's customer input object (so the
API's own rules check it), and back from a customer's API body to prefill an edit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing.money import SUPPORTED_CURRENCIES
from resources.customers import PAYMENT_PROVIDERS

TEXT_FIELDS = (
    "name",
    "external_id",
    "email",
    "legal_name",
    "legal_number",
    "tax_identification_number",
    "phone",
    "url",
    "address_line1",
    "address_line2",
    "zipcode",
    "city",
    "state",
    "country",
    "timezone",
    "currency",
)
PAYMENT_PROVIDER = "billing_configuration.payment_provider"
METADATA_ROWS = 5
FIELDS = (
    *TEXT_FIELDS,
    PAYMENT_PROVIDER,
    *(f"metadata.{i}.{part}" for i in range(METADATA_ROWS) for part in ("key", "value")),
)
CURRENCIES = tuple(sorted(SUPPORTED_CURRENCIES))
PROVIDERS = PAYMENT_PROVIDERS


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def to_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """The API's customer object from the posted form: a blank field clears its value."""
    raw: dict[str, Any] = {name: _text(data, name) for name in TEXT_FIELDS}
    raw["billing_configuration"] = {"payment_provider": _text(data, PAYMENT_PROVIDER)}
    metadata = []
    for i in range(METADATA_ROWS):
        key, value = _text(data, f"metadata.{i}.key"), _text(data, f"metadata.{i}.value")
        if key is None and value is None:
            continue
        metadata.append(
            {
                "key": key,
                "value": value,
                "display_in_invoice": data.get(f"metadata.{i}.display_in_invoice") == "on",
            }
        )
    raw["metadata"] = metadata
    return raw


def from_body(body: dict[str, Any]) -> dict[str, Any]:
    """The form's values of a customer's API body."""
    values: dict[str, Any] = {name: body.get(name) or "" for name in TEXT_FIELDS}
    values[PAYMENT_PROVIDER] = body["billing_configuration"].get("payment_provider") or ""
    for i, item in enumerate(body.get("metadata", [])[:METADATA_ROWS]):
        values[f"metadata.{i}.key"] = item.get("key") or ""
        values[f"metadata.{i}.value"] = item.get("value") or ""
        values[f"metadata.{i}.display_in_invoice"] = bool(item.get("display_in_invoice"))
    return values


def from_posted(data: Mapping[str, Any]) -> dict[str, Any]:
    """What was typed, to show again beside the errors."""
    values: dict[str, Any] = {name: data.get(name, "") for name in FIELDS}
    for i in range(METADATA_ROWS):
        values[f"metadata.{i}.display_in_invoice"] = (
            data.get(f"metadata.{i}.display_in_invoice") == "on"
        )
    return values
