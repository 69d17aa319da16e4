"""A checksum of the money a bench run wrote (every invoice, fee, coupon, wallet, wallet
transaction, credit note and credit note use), blind to what differs between two runs of the
same input: random ids become stable names, timestamps taken from the clock are left out."""

from __future__ import annotations

import hashlib
import re

import asyncpg

# The tables summed, and their columns that hold the clock's time of the write.
TABLES = (
    "invoices",
    "fees",
    "applied_coupons",
    "wallets",
    "wallet_transactions",
    "credit_notes",
    "credit_note_uses",
)
_CLOCK = [
    "created_at",
    "updated_at",
    "finalized_at",
    "terminated_at",
    "settled_at",
    "last_consumed_credit_at",
]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Each random id's stable name: catalog rows by their codes, the rest by what they belong to.
_NAMES = """
SELECT id, name FROM organizations
UNION ALL SELECT id, 'customer:' || external_id FROM customers
UNION ALL SELECT id, 'subscription:' || external_id FROM subscriptions
UNION ALL SELECT id, 'plan:' || code FROM plans
UNION ALL SELECT id, 'metric:' || code FROM billable_metrics
UNION ALL SELECT id, 'charge:' || position FROM charges
UNION ALL SELECT id, 'coupon:' || code FROM coupons
UNION ALL SELECT id, 'tax:' || code FROM taxes
UNION ALL SELECT a.id, 'applied_coupon:' || c.external_id FROM applied_coupons a
    JOIN customers c ON c.id = a.customer_id
UNION ALL SELECT w.id, 'wallet:' || c.external_id FROM wallets w
    JOIN customers c ON c.id = w.customer_id
UNION ALL SELECT i.id, 'invoice:' || c.external_id || ':' || i.sequential_id FROM invoices i
    JOIN customers c ON c.id = i.customer_id
UNION ALL SELECT n.id, 'credit_note:' || c.external_id || ':' || n.sequential_id
    FROM credit_notes n JOIN customers c ON c.id = n.customer_id
UNION ALL SELECT f.id, 'fee:' || c.external_id || ':' || i.sequential_id || ':' || f.position
    FROM fees f JOIN invoices i ON i.id = f.invoice_id JOIN customers c ON c.id = i.customer_id
UNION ALL SELECT t.id, 'wallet_transaction:' || c.external_id || ':'
    || coalesce(i.sequential_id::text, '-') || ':' || t.transaction_type
    FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id
    JOIN customers c ON c.id = w.customer_id LEFT JOIN invoices i ON i.id = t.invoice_id
"""


async def invoice_checksum(conn: asyncpg.Connection) -> str:
    """SHA-256 (hex) over the tables' rows, each as JSON with every uuid named and clock
    columns dropped, sorted; an id no row names shows as `unknown` (and changes the sum)."""
    names = {str(r["id"]): r["name"] for r in await conn.fetch(_NAMES)}
    organizations = await conn.fetch("SELECT id FROM organizations")
    # An invoice number carries the last four hex digits of its organization's id.
    prefixes = {str(r["id"])[-4:].upper() for r in organizations}
    digest = hashlib.sha256()
    for table in TABLES:
        rows = await conn.fetch(
            f"SELECT (to_jsonb(t) - $1::text[])::text AS row FROM {table} t", _CLOCK
        )
        named = []
        for r in rows:
            text = _UUID.sub(lambda m: names.get(m.group(0), "unknown"), r["row"])
            for prefix in prefixes:
                text = text.replace(f"-{prefix}-", "-ORG-")
            named.append(text)
        digest.update(table.encode())
        for text in sorted(named):
            digest.update(text.encode() + b"\n")
    return digest.hexdigest()
