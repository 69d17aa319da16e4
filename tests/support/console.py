"""The console's test helpers: organizations with a console user, and signing in over HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, async_playwright

from console.users import create_user
from gateway.organizations import create_organization
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


CHROMIUM = "/usr/bin/chromium"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless Chromium driven by Playwright (never a downloaded browser build)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in_page(browser: Browser, base: str, operator: Operator) -> Page:
    """A new browser context signed in through the sign-in form; returns its page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/console/")
    await page.get_by_label("Email").fill(operator.email)
    await page.get_by_label("Password").fill(operator.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console/customers")
    return page


async def call_api(base: str, key: str, method: str, path: str, body: Any = None) -> Any:
    """One Lago API call (`path` under /api/v1) with the organization's key; asserts 200."""
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.request(method, f"{base}/api/v1/{path}", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()
