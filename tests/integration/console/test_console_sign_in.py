"""Signing in to the console over HTTP: sessions in Postgres, CSRF on every form, failed
sign-ins slowed down, and nothing of another organization in sight."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.service import IngestServer
from support.console import Operator, csrf_of, sign_in


async def _sign_in_token(http: aiohttp.ClientSession, server_url: str) -> str:
    """The CSRF token of a freshly opened sign-in form (its cookie stays in `http`)."""
    async with http.get(f"{server_url}/console/sign-in") as page:
        return csrf_of(await page.text())


async def test_a_signed_out_visitor_is_sent_to_sign_in(
    console_server: IngestServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{console_server.url}/console/customers?q=x") as response:
        assert response.status == 200
        assert response.url.path == "/console/sign-in"
        assert response.url.query["next"] == "/console/customers?q=x"


async def test_sign_in_opens_a_server_side_session_with_a_safe_cookie(
    console_server: IngestServer,
    http: aiohttp.ClientSession,
    operator_factory: Callable[..., Any],
    db: asyncpg.Connection,
) -> None:
    operator: Operator = await operator_factory()
    token = await _sign_in_token(http, console_server.url)
    form = {"csrf_token": token, "email": operator.email.upper(), "password": operator.password}
    async with http.post(
        f"{console_server.url}/console/sign-in", data=form, allow_redirects=False
    ) as response:
        assert response.status == 303
        cookie = response.cookies["meterflow_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/console"
    digest = hashlib.sha256(cookie.value.encode()).digest()
    stored = await db.fetchrow("SELECT * FROM console_sessions WHERE token_digest = $1", digest)
    assert stored is not None and stored["expires_at"] > stored["created_at"]
    hashes = await db.fetch("SELECT password_hash FROM console_users")
    assert all(h["password_hash"].startswith("$argon2id$") for h in hashes)

    async with http.get(f"{console_server.url}/console/customers") as page:
        html = await page.text()
        assert page.status == 200 and "Create your first customer" in html
        assert operator.api_key not in html, "no API key reaches the browser"
    async with http.post(
        f"{console_server.url}/console/sign-out", data={"csrf_token": csrf_of(html)}
    ) as response:
        assert response.url.path == "/console/sign-in"
    revoked = await db.fetchval(
        "SELECT revoked_at FROM console_sessions WHERE token_digest = $1", digest
    )
    assert revoked is not None, "signing out revokes the session server-side"
    http.cookie_jar.update_cookies({"meterflow_session": cookie.value})
    async with http.get(f"{console_server.url}/console/customers") as page:
        assert page.url.path == "/console/sign-in", "a revoked session no longer opens pages"


async def test_repeated_failed_sign_ins_are_slowed_down(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    token = await _sign_in_token(http, console_server.url)
    statuses = []
    for _ in range(5):
        form = {"csrf_token": token, "email": operator.email, "password": "wrong password!"}
        async with http.post(f"{console_server.url}/console/sign-in", data=form) as response:
            statuses.append(response.status)
            last = await response.text()
    assert statuses[:3] == [401, 401, 401]
    assert 429 in statuses[3:], statuses
    assert "Too many failed sign-ins" in last
    form = {"csrf_token": token, "email": operator.email, "password": operator.password}
    async with http.post(f"{console_server.url}/console/sign-in", data=form) as response:
        assert response.status == 429, "even the right password waits its turn"


async def test_one_password_tried_on_many_emails_is_slowed_down_by_address(
    console_server: IngestServer,
    http: aiohttp.ClientSession,
    operator_factory: Callable[..., Any],
    db: asyncpg.Connection,
) -> None:
    operator: Operator = await operator_factory()
    token = await _sign_in_token(http, console_server.url)
    statuses = []
    for i in range(20):
        form = {"csrf_token": token, "email": f"guess-{i}@example.com", "password": "Summer2026!"}
        async with http.post(f"{console_server.url}/console/sign-in", data=form) as response:
            statuses.append(response.status)
    assert statuses == [401] * 20, "each email failed once: no email is throttled"
    failures = await db.fetchval(
        "SELECT failures FROM console_sign_in_failures WHERE subject LIKE 'address:%'"
    )
    assert failures == 20
    form = {"csrf_token": token, "email": operator.email, "password": operator.password}
    # No proxy is trusted: a client naming another address in X-Forwarded-For changes nothing.
    spoofed = {"X-Forwarded-For": "198.51.100.9"}
    async with http.post(
        f"{console_server.url}/console/sign-in", data=form, headers=spoofed
    ) as response:
        assert response.status == 429, "the address waits, even with a right password"
        assert "Too many failed sign-ins from your network address" in await response.text()


@pytest.fixture
def proxied_console(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> IngestServer:
    """The console behind a reverse proxy on 127.0.0.1, trusted to say who its clients are."""
    monkeypatch.setenv("METERFLOW_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    server: IngestServer = request.getfixturevalue("console_server")
    return server


async def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(
    proxied_console: IngestServer,
    http: aiohttp.ClientSession,
    operator_factory: Callable[..., Any],
    db: asyncpg.Connection,
) -> None:
    operator: Operator = await operator_factory()
    url = f"{proxied_console.url}/console/sign-in"
    token = await _sign_in_token(http, proxied_console.url)
    # The client wrote 192.0.2.1 itself; the proxies appended what they saw, from the right.
    sprayer = {"X-Forwarded-For": "192.0.2.1, 203.0.113.7, 10.1.2.3"}
    for i in range(20):
        form = {"csrf_token": token, "email": f"guess-{i}@example.com", "password": "Summer2026!"}
        async with http.post(url, data=form, headers=sprayer) as response:
            assert response.status == 401
    subjects = await db.fetch(
        "SELECT subject, failures FROM console_sign_in_failures WHERE subject LIKE 'address:%'"
    )
    assert [tuple(s) for s in subjects] == [("address:203.0.113.7", 20)]
    form = {"csrf_token": token, "email": operator.email, "password": operator.password}
    async with http.post(url, data=form, headers=sprayer, allow_redirects=False) as response:
        assert response.status == 429
    neighbour = {"X-Forwarded-For": "203.0.113.8"}
    async with http.post(url, data=form, headers=neighbour, allow_redirects=False) as response:
        assert response.status == 303, "another client behind the same proxy signs in"


async def test_a_form_without_its_csrf_token_is_refused(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    await sign_in(http, console_server.url, operator)
    for data in ({"external_id": "no-token"}, {"external_id": "bad", "csrf_token": "forged"}):
        async with http.post(f"{console_server.url}/console/customers", data=data) as response:
            assert response.status == 403
            assert "CSRF token" in await response.text()
    async with http.get(f"{console_server.url}/console/customers?q=no-token") as page:
        assert "No customer matches" in await page.text(), "nothing was created"
    async with http.get(f"{console_server.url}/console/sign-in") as page:
        await page.text()
    form = {"email": operator.email, "password": operator.password}
    async with http.post(f"{console_server.url}/console/sign-in", data=form) as response:
        assert response.status == 403, "the sign-in form has its token too"


async def test_another_organizations_customer_is_not_found(
    console_server: IngestServer, operator_factory: Callable[..., Any]
) -> None:
    first: Operator = await operator_factory("First")
    second: Operator = await operator_factory("Second")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as one:
        token = await sign_in(one, console_server.url, first)
        form = {"csrf_token": token, "external_id": "first-only", "name": "First's customer"}
        async with one.post(f"{console_server.url}/console/customers", data=form) as created:
            customer_url = str(created.url)
            assert created.url.path.startswith("/console/customers/")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await sign_in(other, console_server.url, second)
        for suffix in ("", "/edit", "/usage", "/invoices", "/delete"):
            async with other.get(customer_url + suffix) as response:
                assert response.status == 404, suffix
                assert "First's customer" not in await response.text()
        async with other.get(f"{console_server.url}/console/customers?q=first") as page:
            assert "first-only" not in await page.text()


async def test_an_expired_session_opens_nothing_and_is_cleared_at_the_next_sign_in(
    console_server: IngestServer,
    http: aiohttp.ClientSession,
    operator_factory: Callable[..., Any],
    db: asyncpg.Connection,
) -> None:
    operator: Operator = await operator_factory()
    await sign_in(http, console_server.url, operator)
    await db.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    async with http.get(f"{console_server.url}/console/customers") as page:
        assert page.url.path == "/console/sign-in"
    await sign_in(http, console_server.url, operator)
    assert await db.fetchval("SELECT count(*) FROM console_sessions") == 1
