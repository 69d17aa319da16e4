"""package: free units first, then a fixed amount per started package of units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from billing.charge_models.charge_amount import ChargeAmount, ChargeUsage
from billing.charge_models.properties import PropertyErrors, non_negative_decimal, non_negative_int


@dataclass(frozen=True, slots=True)
class Package:
    amount: Decimal
    free_units: int
    package_size: int


def parse(properties: Mapping[str, object]) -> Package:
    """`amount` a decimal string, `free_units` an integer >= 0, `package_size` an integer > 0."""
    errors = PropertyErrors()
    price = non_negative_decimal(properties.get("amount"))
    if price is None:
        errors.add("amount", "invalid_amount")
    free_units = non_negative_int(properties.get("free_units"))
    if free_units is None:
        errors.add("free_units", "invalid_free_units")
    package_size = non_negative_int(properties.get("package_size"))
    if not package_size:
        errors.add("package_size", "invalid_package_size")
    errors.raise_if_any()
    assert price is not None and free_units is not None and package_size
    return Package(price, free_units, package_size)


def amount(package: Package, usage: ChargeUsage) -> ChargeAmount:
    """ceil((units - free_units) / package_size) x amount: a package counts from its first
    unit, so 201 units with 100 free and packages of 100 at 5 cost 10."""
    units = usage.units
    paid_units = max(units - package.free_units, Decimal(0))
    packages = (paid_units / package.package_size).to_integral_value(rounding=ROUND_CEILING)
    return ChargeAmount(
        units,
        packages * package.amount,
        details={
            "free_units": min(units, Decimal(package.free_units)),
            "paid_units": paid_units,
            "per_package_size": Decimal(package.package_size),
            "per_package_unit_amount": package.amount,
        },
    )
