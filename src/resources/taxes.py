"""`/api/v1/taxes`: the five code-keyed routes over `store.taxes`."""

from __future__ import annotations

from resources import crud
from store.taxes import TAXES

ROUTES = crud.code_keyed_routes(TAXES)
