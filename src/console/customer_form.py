"""The customer form: its fields, turned into the API's customer input object (so the
API's own rules check it), and back from a customer's API body to prefill an edit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from billing.money import SUPPORTED_CURRENCIES
from store.customers import PAYMENT_PROVIDERS

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
# Blank metadata rows under the customer's own, so a key can be added; the customer's rows
# are all shown, however many, so an edit never drops one.
BLANK_METADATA_ROWS = 3
_METADATA_FIELD = re.compile(r"^metadata\.(\d{1,4})\.(key|value|display_in_invoice)$")
CURRENCIES = tuple(sorted(SUPPORTED_CURRENCIES))
PROVIDERS = PAYMENT_PROVIDERS


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _metadata_indices(data: Mapping[str, Any]) -> list[int]:
    """The metadata rows a posted form names, in order."""
    found = {int(m.group(1)) for name in data if (m := _METADATA_FIELD.match(name))}
    return sorted(found)


def metadata_rows(values: Mapping[str, Any]) -> int:
    """How many rows the form's metadata table shows: up to the last one holding something,
    then the blank ones."""
    held = [i for i in _metadata_indices(values) if values.get(f"metadata.{i}.key")]
    return (max(held) + 1 if held else 0) + BLANK_METADATA_ROWS


def fields(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the form's inputs, metadata rows included, that errors can stand beside."""
    rows = range(metadata_rows(values))
    return (
        *TEXT_FIELDS,
        PAYMENT_PROVIDER,
        *(f"metadata.{i}.{part}" for i in rows for part in ("key", "value")),
    )


def to_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """The API's customer object from the posted form: a blank field clears its value."""
    raw: dict[str, Any] = {name: _text(data, name) for name in TEXT_FIELDS}
    raw["billing_configuration"] = {"payment_provider": _text(data, PAYMENT_PROVIDER)}
    metadata = []
    for i in _metadata_indices(data):
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
    for i, item in enumerate(body.get("metadata", [])):
        values[f"metadata.{i}.key"] = item.get("key") or ""
        values[f"metadata.{i}.value"] = item.get("value") or ""
        values[f"metadata.{i}.display_in_invoice"] = bool(item.get("display_in_invoice"))
    return values


def from_posted(data: Mapping[str, Any]) -> dict[str, Any]:
    """What was typed, to show again beside the errors."""
    values: dict[str, Any] = {name: data.get(name, "") for name in (*TEXT_FIELDS, PAYMENT_PROVIDER)}
    for i in _metadata_indices(data):
        values[f"metadata.{i}.key"] = data.get(f"metadata.{i}.key", "")
        values[f"metadata.{i}.value"] = data.get(f"metadata.{i}.value", "")
        values[f"metadata.{i}.display_in_invoice"] = (
            data.get(f"metadata.{i}.display_in_invoice") == "on"
        )
    return values
