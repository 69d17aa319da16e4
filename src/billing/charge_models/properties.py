"""Reading charge properties, collecting Lago-style error codes per field."""

from __future__ import annotations

import re
from decimal import Decimal

from billing.errors import InvalidChargeProperties

# Lago's decimal strings: digits with an optional fraction, no sign, no exponent.
_DECIMAL_TEXT = re.compile(r"\d+(?:\.\d*)?|\.\d+")


class PropertyErrors:
    """Collects every problem before raising, so one answer lists them all."""

    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}

    def add(self, field: str, code: str) -> None:
        codes = self.details.setdefault(field, [])
        if code not in codes:
            codes.append(code)

    def raise_if_any(self) -> None:
        if self.details:
            raise InvalidChargeProperties(self.details)


def non_negative_decimal(value: object) -> Decimal | None:
    """A non-negative decimal from a decimal string, an int or a Decimal; None if not one.

    Floats are refused: a price that arrives as a float has already lost its exactness.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if value >= 0 else None
    if isinstance(value, Decimal):
        return value if value.is_finite() and value >= 0 else None
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


def non_negative_int(value: object) -> int | None:
    """A non-negative integer, or None; booleans are not integers here."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
