"""Console users: one organization each, passwords stored as argon2 hashes only."""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from meterflow import db
from meterflow.db import Conn
from meterflow.errors import ConfigurationError
from meterflow.settings import Settings
from store import database

_HASHER = PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _decoy_hash() -> str:
    """Verified when the email is unknown, so that a wrong email costs as much time as a
    wrong password and the answer's delay tells nothing about which users exist."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one hashed (the same argon2 work when the hash is None)."""
    try:
        _HASHER.verify(password_hash or _decoy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


async def user_by_email(conn: Conn, email: str) -> tuple[User, str] | None:
    """The user with this email (any case) and its password hash."""
    row = await conn.fetchrow(
        "SELECT id, organization_id, email, password_hash FROM console_users "
        "WHERE lower(email) = lower($1)",
        email,
    )
    if row is None:
        return None
    return User(row["id"], row["organization_id"], row["email"]), row["password_hash"]


async def _organization_id(conn: Conn, reference: str) -> uuid.UUID:
    """The organization named by its id or by its (unique) name."""
    try:
        by_id = await conn.fetchval(
            "SELECT id FROM organizations WHERE id = $1", uuid.UUID(reference)
        )
    except ValueError:
        by_id = None
    if by_id is not None:
        found: uuid.UUID = by_id
        return found
    rows = await conn.fetch("SELECT id FROM organizations WHERE name = $1", reference)
    if len(rows) == 1:
        named: uuid.UUID = rows[0]["id"]
        return named
    if rows:
        raise ConfigurationError(
            f"{len(rows)} organizations are named {reference!r}: give --organization its id"
        )
    raise ConfigurationError(f"no organization has the id or name {reference!r}")


def check_new_user(email: str, password: str) -> None:
    if not _EMAIL.match(email):
        raise ConfigurationError(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigurationError(
            f"a console password needs at least {MIN_PASSWORD_LENGTH} characters"
        )


async def create_user(settings: Settings, organization: str, email: str, password: str) -> User:
    """Create a console user of the organization named by id or name (`meterflow create-user`)."""
    check_new_user(email, password)
    password_hash = hash_password(password)
    pool = await database.create_pool(settings.dsn, schema=settings.db_schema, size=1)
    try:
        async with db.unit_of_work(pool) as conn:
            org_id = await _organization_id(conn, organization)
            user = User(uuid.uuid4(), org_id, email)
            try:
                await conn.execute(
                    "INSERT INTO console_users (id, organization_id, email, password_hash) "
                    "VALUES ($1, $2, $3, $4)",
                    user.id,
                    org_id,
                    email,
                    password_hash,
                )
            except asyncpg.UniqueViolationError:
                raise ConfigurationError(f"a console user with email {email!r} exists") from None
    finally:
        await pool.close()
    return user
