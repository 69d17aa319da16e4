"""`/api/v1/coupons`: the five code-keyed routes over `store.coupons`."""

from __future__ import annotations

from resources import crud
from store.coupons import COUPONS

ROUTES = crud.code_keyed_routes(COUPONS)
