"""The API's error codes said in words beside the form field they name."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

_SAID = {
    "value_is_mandatory": "Required.",
    "value_is_invalid": "Not a valid value.",
    "value_already_exist": "Already taken: another object of your organization uses it.",
    "invalid_timezone": "Not an IANA timezone: pick one from the list (e.g. Europe/Paris).",
    "country_code_invalid": "Two letters (ISO 3166), e.g. FR.",
    "invalid_date": "Not a valid date, or not in the future where it must be.",
    "external_id_locked": (
        "Locked: a plan, coupon, wallet or invoice is assigned to this customer, so its "
        "external ID can no longer change."
    ),
    "currencies_does_not_match": "Not the customer's currency.",
    "coupon_is_not_reusable": "This coupon was already applied to this customer once.",
    "insufficient_credits": "More than the wallet holds.",
    "not_supported": "Not supported by meterflow yet.",
    "tax_not_found": "No such tax in your organization.",
    "plan_not_found": "No such plan in your organization.",
    "coupon_not_found": "No such coupon, or it is terminated or expired.",
    "unknown_field": "Not a field of this form.",
    "add_on_not_found": "No such add-on in your organization.",
    "invoice_not_found": "No such invoice of this customer.",
    "invoice_not_finalized": "Not a finalized invoice: a draft or a voided one takes no payment.",
    "invoice_already_paid": "This invoice is already paid.",
    "higher_than_remaining_invoice_amount": "More than the invoice still asks.",
}


def say(code: str) -> str:
    return _SAID.get(code, code.replace("_", " ").capitalize() + ".")


def field_errors(details: dict[str, Any], fields: Collection[str]) -> dict[str, list[str]]:
    """The API's `error_details` in words, keyed by form field; details naming no field of
    the form are gathered under `""` (shown above the form)."""
    out: dict[str, list[str]] = {}
    for key, codes in details.items():
        codes = codes if isinstance(codes, list) else [codes]
        if isinstance(codes, list) and codes and isinstance(codes[0], dict):
            codes = [str(c) for c in codes]
        target = key if key in fields else ""
        said = [say(str(c)) for c in codes]
        if target == "":
            said = [f"{key}: {s}" for s in said]
        out.setdefault(target, []).extend(said)
    return out
