"""Webhook signatures as Lago makes them: `hmac` is the base64 HMAC-SHA256 of the body with
the organization's secret; `jwt` is an RS256 JWT whose `data` claim is the body, checked
with the public key that `GET /api/v1/webhooks/json_public_key` serves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meterflow import db
from meterflow.db import Conn
from meterflow.errors import ConfigurationError
from meterflow.settings import Settings

# The JWT's `iss` unless the worker is told otherwise (METERFLOW_WEBHOOKS_JWT_ISSUER): Lago
# puts its API URL there, which receivers may check.
ISSUER = "meterflow"


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """One organization's webhook secrets."""

    hmac_key: str
    private_key_pem: str

    def public_key_pem(self) -> bytes:
        private = serialization.load_pem_private_key(self.private_key_pem.encode(), None)
        return private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, algorithm: str, body: bytes, *, issuer: str = ISSUER) -> str:
        if algorithm == "jwt":
            return jwt.encode(
                {"data": body.decode(), "iss": issuer}, self.private_key_pem, algorithm="RS256"
            )
        digest = hmac.new(self.hmac_key.encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()


def _new_keys() -> SigningKeys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKeys(secrets.token_hex(32), pem.decode())


async def signing_keys(conn: Conn, organization_id: uuid.UUID) -> SigningKeys:
    """The organization's keys, made on first use (two first uses at once keep one)."""
    row = await conn.fetchrow(
        "SELECT hmac_key, private_key_pem FROM webhook_keys WHERE organization_id = $1",
        organization_id,
    )
    if row is None:
        keys = _new_keys()
        await conn.execute(
            "INSERT INTO webhook_keys (organization_id, hmac_key, private_key_pem) "
            "VALUES ($1, $2, $3) ON CONFLICT (organization_id) DO NOTHING",
            organization_id,
            keys.hmac_key,
            keys.private_key_pem,
        )
        row = await conn.fetchrow(
            "SELECT hmac_key, private_key_pem FROM webhook_keys WHERE organization_id = $1",
            organization_id,
        )
        assert row is not None
    return SigningKeys(row["hmac_key"], row["private_key_pem"])


async def organization_secret(settings: Settings, organization: str) -> str:
    """The organization's HMAC secret (made now if it has none), for `meterflow
    webhook-secret`; ConfigurationError when no organization has that id."""
    try:
        organization_id = uuid.UUID(organization)
    except ValueError:
        raise ConfigurationError(f"{organization!r} is not an organization id") from None
    conn = await db.connect(settings.dsn, schema=settings.db_schema)
    try:
        if not await conn.fetchval("SELECT 1 FROM organizations WHERE id = $1", organization_id):
            raise ConfigurationError(f"no organization {organization_id}")
        return (await signing_keys(conn, organization_id)).hmac_key
    finally:
        await conn.close()
