"""The billing domain's errors, one root, each docstring telling the operator what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class BillingError(Exception):
    """Root of every error the billing domain raises on purpose.

    None of these is transient: retrying the same input gives the same answer, so callers
    never retry them; they fix the input (or the configuration) named in the message.
    """


class UnknownCurrency(BillingError):
    """A currency code is not one meterflow bills in.

    Use an ISO 4217 code from `billing.money.SUPPORTED_CURRENCIES` (upper case) on the
    customer, plan or coupon that carried it.
    """

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"unknown currency {code!r}: use an ISO 4217 code meterflow supports")


class UnknownTimezone(BillingError):
    """A customer's or organization's timezone is not an IANA zone name.

    Fix the `timezone` attribute of the customer (or organization) to a name such as
    `Europe/Paris`; the machine's tz database must contain it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris'")


class InvalidEvent(BillingError):
    """A usage event that can never be counted (a poison event).

    Never retry it: send it to the dead-letter topic with `reason` and `field`, so the
    producer can fix and resend it under the same transaction_id.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"invalid event: {where}{reason}")


class OutsideSubscription(BillingError):
    """An instant precedes the subscription's start, so no billing period contains it.

    An event stamped before its subscription started belongs to no invoice: count it on the
    late/invalid path (dead-letter with this reason) rather than in any period.
    """


class InvalidChargeProperties(BillingError):
    """A charge's `properties` do not fit its charge model.

    `details` maps each offending field to Lago-style error codes (the `error_details` of a
    422 answer); the plan or charge must be corrected before it can price anything.
    """

    def __init__(self, details: Mapping[str, Sequence[str]]) -> None:
        self.details: dict[str, list[str]] = {k: list(v) for k, v in details.items()}
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(self.details.items()))
        super().__init__(f"invalid charge properties: {summary}")


class InvalidInvoiceInput(BillingError):
    """Invoice arithmetic was given inconsistent inputs (mixed currencies, negative amounts).

    This is a bug in the caller or corrupt catalog data: fix the coupon, fee or wallet named
    in the message; the invoice must not be issued until then.
    """
