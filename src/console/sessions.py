"""Server-side sessions in Postgres (revocable, expiring; the cookie's SHA-256 digest is the
key), the CSRF token each one carries, and the slowing down of repeated failed sign-ins."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from console import users
from meterflow.db import Conn
from web.context import Organization

log = logging.getLogger(__name__)

# Failed sign-ins allowed in a row before each next attempt must wait: per email, and per
# client address across every email it tries (so that one password tried on many emails
# slows down too). The wait doubles with each further failure, up to MAX_WAIT. Failures
# older than FORGET_AFTER no longer count.
FREE_FAILURES = {"email": 3, "address": 20}
MAX_WAIT = timedelta(seconds=60)
FORGET_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user of a request, with its organization and its session's CSRF token."""

    user_id: str
    email: str
    organization: Organization
    csrf_token: str


class SignInRefused(Exception):
    """A sign-in that did not open a session; `wait` is set when it came too soon after the
    failures of `throttled` ("email" or "address")."""

    def __init__(self, wait: timedelta | None = None, throttled: str | None = None):
        super().__init__("sign_in_refused")
        self.wait = wait
        self.throttled = throttled


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _wait_after(kind: str, failures: int) -> timedelta:
    free = FREE_FAILURES[kind]
    if failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - free)), MAX_WAIT)


async def _too_soon(
    conn: Conn, subjects: dict[str, str], now: datetime
) -> tuple[str, timedelta] | None:
    """The longest wait any of `subjects` (kind -> subject) still owes, with its kind."""
    rows = await conn.fetch(
        "SELECT subject, failures, last_failure_at FROM console_sign_in_failures "
        "WHERE subject = ANY($1::text[])",
        list(subjects.values()),
    )
    kind_of = {subject: kind for kind, subject in subjects.items()}
    waits = []
    for row in rows:
        if now - row["last_failure_at"] > FORGET_AFTER:
            continue
        kind = kind_of[row["subject"]]
        allowed_at = row["last_failure_at"] + _wait_after(kind, row["failures"])
        if allowed_at > now:
            waits.append((allowed_at - now, kind))
    if not waits:
        return None
    wait, kind = max(waits)
    return kind, wait


async def _record_failure(conn: Conn, subjects: dict[str, str], now: datetime) -> None:
    await conn.execute(
        "INSERT INTO console_sign_in_failures (subject, failures, last_failure_at) "
        "SELECT s, 1, $2 FROM unnest($1::text[]) s ON CONFLICT (subject) DO UPDATE SET "
        "failures = CASE WHEN console_sign_in_failures.last_failure_at < $2 - $3::interval "
        "THEN 1 ELSE console_sign_in_failures.failures + 1 END, last_failure_at = $2",
        list(subjects.values()),
        now,
        FORGET_AFTER,
    )


async def sign_in(
    pool: asyncpg.Pool, email: str, password: str, lifetime: timedelta, address: str | None
) -> str:
    """Check the password and open a session; returns the cookie's token. SignInRefused for
    a wrong email or password, or an attempt that comes before its wait after the failures
    of its email or of its client `address` (None: not known, not counted)."""
    key = email.strip().lower()
    subjects = {"email": f"email:{key}"}
    if address:
        subjects["address"] = f"address:{address}"
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        throttled = await _too_soon(conn, subjects, now)
        if throttled is not None:
            kind, wait = throttled
            log.info(
                "console.sign_in_throttled by=%s email=%s address=%s wait_s=%.1f",
                kind,
                key,
                address,
                wait.total_seconds(),
            )
            raise SignInRefused(wait, kind)
        found = await users.user_by_email(conn, key)
    # argon2 takes tens of milliseconds of CPU: off the event loop.
    matches = await asyncio.to_thread(users.password_matches, found[1] if found else None, password)
    async with pool.acquire() as conn:
        if found is None or not matches:
            await _record_failure(conn, subjects, datetime.now(UTC))
            log.info("console.sign_in_failed email=%s address=%s", key, address)
            raise SignInRefused()
        # The address's failures stay: one valid account must not reset a password spray.
        await conn.execute(
            "DELETE FROM console_sign_in_failures WHERE subject = $1", subjects["email"]
        )
        # The user's ended sessions are of no use any more: they go when a new one starts.
        await conn.execute(
            "DELETE FROM console_sessions WHERE user_id = $1 "
            "AND (expires_at <= now() OR revoked_at IS NOT NULL)",
            found[0].id,
        )
        token = new_token()
        await conn.execute(
            "INSERT INTO console_sessions (token_digest, user_id, csrf_token, expires_at) "
            "VALUES ($1, $2, $3, $4)",
            digest(token),
            found[0].id,
            new_token(),
            now + lifetime,
        )
    log.info(
        "console.signed_in user_id=%s organization_id=%s", found[0].id, found[0].organization_id
    )
    return token


async def viewer(conn: Conn, token: str) -> Viewer | None:
    """The user of a live session (not revoked, not expired), or None."""
    row = await conn.fetchrow(
        "SELECT s.csrf_token, u.id AS user_id, u.email, o.id AS organization_id, "
        "o.name AS organization_name, o.timezone AS organization_timezone "
        "FROM console_sessions s JOIN console_users u ON u.id = s.user_id "
        "JOIN organizations o ON o.id = u.organization_id "
        "WHERE s.token_digest = $1 AND s.revoked_at IS NULL AND s.expires_at > now()",
        digest(token),
    )
    if row is None:
        return None
    return Viewer(
        user_id=str(row["user_id"]),
        email=row["email"],
        organization=Organization(
            row["organization_id"], row["organization_name"], row["organization_timezone"]
        ),
        csrf_token=row["csrf_token"],
    )


async def sign_out(conn: Conn, token: str) -> None:
    await conn.execute(
        "UPDATE console_sessions SET revoked_at = now() WHERE token_digest = $1 "
        "AND revoked_at IS NULL",
        digest(token),
    )
