"""The console's test helpers: organizations with a console user, and signing in over HTTP."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import aiohttp

from console.users import create_user
from ingest.organizations import create_organization
from meterflow.settings import Settings

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Operator:
    """A console user of a fresh organization, and that organization's API key."""

    organization_id: str
    organization_name: str
    api_key: str
    email: str
    password: str = PASSWORD


async def make_operator(
    settings: Settings, name: str = "Acme", timezone: str = "Europe/Paris"
) -> Operator:
    """A fresh organization with a console user."""
    org, key = await create_organization(settings, name, timezone)
    email = f"{uuid.uuid4().hex[:8]}@{name.lower()}.test"
    await create_user(settings, str(org.id), email, PASSWORD)
    return Operator(str(org.id), name, key, email)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


async def sign_in(http: aiohttp.ClientSession, base: str, operator: Operator) -> str:
    """Sign in through the form; returns the CSRF token of the first page after it."""
    async with http.get(f"{base}/console/sign-in") as page:
        token = csrf_of(await page.text())
    form = {"csrf_token": token, "email": operator.email, "password": operator.password}
    async with http.post(f"{base}/console/sign-in", data=form) as response:
        assert response.status == 200, await response.text()
        assert response.url.path == "/console/customers"
        return csrf_of(await response.text())
