"""Exact money: currencies, their minor units, and the one rounding rule (half up)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from billing.errors import UnknownCurrency

# The currencies Lago's v1 API accepts (its `Currency` enum).
_LAGO_CURRENCY_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BIF BMD BND BOB BRL BSD BWP BYN BZD
    CAD CDF CHF CLF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GHS GIP
    GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR ISK JMD JPY KES KGS KHR KMF KRW KYD KZT LAK
    LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRO MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD SHP SLL SOS SRD STD
    SZL THB TJS TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
"""
LAGO_CURRENCIES: frozenset[str] = frozenset(_LAGO_CURRENCY_CODES.split())

# Lago's enum has no three-decimal currency; meterflow also bills in these (ISO 4217), an
# extension a Lago SDK never sends but an operator may configure.
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset(
    {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
)

SUPPORTED_CURRENCIES: frozenset[str] = LAGO_CURRENCIES | THREE_DECIMAL_CURRENCIES

# ISO 4217 minor units of the supported currencies that do not have two.
_ZERO_DECIMAL_CODES = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_MINOR_UNIT_EXCEPTIONS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DECIMAL_CODES.split(), 0),
    **dict.fromkeys(THREE_DECIMAL_CURRENCIES, 3),
    "CLF": 4,
}

MoneyInput = Decimal | int | str


def minor_units(currency: str) -> int:
    """How many decimal places the currency's smallest unit has (JPY 0, USD 2, KWD 3)."""
    if not isinstance(currency, str) or currency not in SUPPORTED_CURRENCIES:
        raise UnknownCurrency(currency)
    return _MINOR_UNIT_EXCEPTIONS.get(currency, 2)


def as_decimal(amount: MoneyInput) -> Decimal:
    """An exact Decimal from an int, a numeric string or a Decimal; floats are refused.

    A float is already inexact by the time it arrives, so letting it into money would hide
    the error instead of preventing it.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"money must be Decimal, int or str, not {type(amount).__name__}")
    try:
        value = Decimal(amount)
    except ArithmeticError as exc:
        raise ValueError(f"not a decimal amount: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"money must be finite, got {amount!r}")
    return value


# The minor unit of 0 to 4 decimal places, as quantize takes it.
_EXPONENTS = tuple(Decimal(1).scaleb(-places) for places in range(5))
_ONE = Decimal(1)


def _exact(amount: MoneyInput) -> Decimal:
    """`as_decimal`, without its conversion for a finite Decimal (the pricing hot path)."""
    if type(amount) is Decimal and amount.is_finite():
        return amount
    return as_decimal(amount)


def round_amount(amount: MoneyInput, currency: str) -> Decimal:
    """Round half up to the currency's minor unit (12.345 USD -> 12.35)."""
    exponent = _EXPONENTS[minor_units(currency)]
    return _exact(amount).quantize(exponent, rounding=ROUND_HALF_UP)


def to_cents(amount: MoneyInput, currency: str) -> int:
    """The amount in integer minor units, as Lago's `amount_cents` (12.345 USD -> 1235)."""
    places = minor_units(currency)
    rounded = _exact(amount).quantize(_EXPONENTS[places], rounding=ROUND_HALF_UP)
    return int(rounded.scaleb(places))


def from_cents(cents: int, currency: str) -> Decimal:
    """The decimal amount of integer minor units (1235 USD cents -> 12.35)."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"cents must be an int, not {type(cents).__name__}")
    return Decimal(cents).scaleb(-minor_units(currency))


def round_cents(cents: MoneyInput) -> int:
    """Round a precise (fractional) cents figure half up to whole minor units."""
    return int(_exact(cents).quantize(_ONE, rounding=ROUND_HALF_UP))
