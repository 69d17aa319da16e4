"""`/api/v1/billable_metrics`: the five code-keyed routes over `store.billable_metrics`."""

from __future__ import annotations

from resources import crud
from store.billable_metrics import BILLABLE_METRICS

ROUTES = crud.code_keyed_routes(BILLABLE_METRICS)
