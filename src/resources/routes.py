"""The route table of every Lago resource, for the gateway to mount."""

from __future__ import annotations

from aiohttp import web

from resources import (
    add_ons,
    alerts,
    analytics,
    api_logs,
    applied_coupons,
    billable_metrics,
    coupons,
    credit_note_amounts,
    credit_note_documents,
    credit_notes,
    current_usage,
    customers,
    document_files,
    fees,
    invoice_actions,
    invoice_preview,
    invoices,
    one_off_invoices,
    organizations,
    payments,
    plans,
    subscriptions,
    taxes,
    wallet_transactions,
    wallets,
)

_RESOURCES = (
    customers,
    billable_metrics,
    plans,
    subscriptions,
    invoices,
    current_usage,
    taxes,
    coupons,
    applied_coupons,
    wallets,
    wallet_transactions,
    organizations,
    add_ons,
    one_off_invoices,
    invoice_actions,
    credit_notes,
    credit_note_amounts,
    invoice_preview,
    fees,
    credit_note_documents,
    document_files,
    analytics,
    payments,
    alerts,
    api_logs,
)


def routes() -> list[web.AbstractRouteDef]:
    return [route for resource in _RESOURCES for route in resource.ROUTES]
