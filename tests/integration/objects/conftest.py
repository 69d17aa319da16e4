"""Fixtures of the billing-objects tests: the ingest API and a tenant with Lago's client
(the ingest tests' fixtures, re-used)."""

from __future__ import annotations

from integration.ingest.conftest import call, make_tenant, server, tenant

__all__ = ["call", "make_tenant", "server", "tenant"]
