"""`/api/v1/plans`: the five code-keyed routes over `store.plans`."""

from __future__ import annotations

from resources import crud
from store.plans import PLANS

ROUTES = crud.code_keyed_routes(PLANS)
