"""`/api/v1/add_ons`: the five code-keyed routes over `store.add_ons`."""

from __future__ import annotations

from resources import crud
from store.add_ons import ADD_ONS

ROUTES = crud.code_keyed_routes(ADD_ONS)
