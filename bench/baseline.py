"""The design meterflow is measured against: Lago's default, one Postgres row per event.

Every accepted event is inserted as a row (one multi-row INSERT per HTTP batch, as a web app
writes it, answered after the commit); a unique index on (organization_id,
external_subscription_id, transaction_id) drops duplicates; current usage is computed at read
time with one SQL aggregate per charge over the events of the period. It runs on the same
Postgres as meterflow, in a schema of its own, behind an aiohttp endpoint shaped like
meterflow's (the same validation code, `ingest.batch`'s one pass for the common batch, and
API keys looked up once and remembered, as meterflow's are), so the HTTP, JSON and validation
costs are the same on both sides and only the storage path differs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import orjson
from aiohttp import web

from billing.events import UsageEvent
from ingest.batch import accept_batch
from ingest.events import event_body, validate_event
from meterflow.db import connect, create_pool
from web.errors import ValidationFailed

SCHEMA_SQL = """
CREATE TABLE api_keys (
    digest bytea PRIMARY KEY,
    organization_id uuid NOT NULL
);
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    organization_id uuid NOT NULL,
    external_subscription_id text NOT NULL,
    transaction_id text NOT NULL,
    code text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}',
    precise_total_amount_cents numeric,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Lago's dedupe key, and the index its usage queries read through.
CREATE UNIQUE INDEX events_transaction ON events
    (organization_id, external_subscription_id, transaction_id);
CREATE INDEX events_usage ON events
    (organization_id, external_subscription_id, code, "timestamp");
"""

INSERT_SQL = """
INSERT INTO events (organization_id, external_subscription_id, transaction_id, code,
                    "timestamp", properties, precise_total_amount_cents)
SELECT $1::uuid, s, t, c, ts, p::jsonb, a
FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::numeric[])
    AS e(s, t, c, ts, p, a)
ON CONFLICT (organization_id, external_subscription_id, transaction_id) DO NOTHING
"""

# The same rows from the wire records of ingest's one-pass batch (`ingest.batch`): Postgres
# reads the JSON array; the timestamp is exact to the microsecond.
INSERT_WIRE_SQL = """
INSERT INTO events (organization_id, external_subscription_id, transaction_id, code,
                    "timestamp", properties)
SELECT $1::uuid, e ->> 'external_subscription_id', e ->> 'transaction_id', e ->> 'code',
       'epoch'::timestamptz + (e ->> 'timestamp')::numeric * interval '1 second',
       e -> 'properties'
FROM jsonb_array_elements($2::jsonb) AS e
ON CONFLICT (organization_id, external_subscription_id, transaction_id) DO NOTHING
"""

# One query per charge, as Lago's aggregation services run them.
COUNT_SQL = """
SELECT count(*) FROM events
WHERE organization_id = $1::uuid AND external_subscription_id = $2 AND code = $3
  AND "timestamp" >= $4 AND "timestamp" < $5
"""
SUM_SQL = """
SELECT count(*), coalesce(sum((properties ->> $6)::numeric), 0) FROM events
WHERE organization_id = $1::uuid AND external_subscription_id = $2 AND code = $3
  AND "timestamp" >= $4 AND "timestamp" < $5
"""
# Every subscription's usage of a period at once: what a billing run over all
# subscriptions has to read.
ALL_USAGE_SQL = """
SELECT external_subscription_id, code, count(*) AS events,
       coalesce(sum((properties ->> $4)::numeric), 0) AS total
FROM events
WHERE organization_id = $1::uuid AND "timestamp" >= $2 AND "timestamp" < $3
GROUP BY external_subscription_id, code
"""


@dataclass(frozen=True, slots=True)
class Charge:
    """A charge as the baseline prices it: the metric's code, aggregation and field."""

    code: str
    aggregation_type: str  # count_agg or sum_agg
    field_name: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeUsage:
    code: str
    events_count: int
    units: Decimal


async def create_schema(dsn: str, schema: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path = "{schema}"')
        await conn.execute(SCHEMA_SQL)
    finally:
        await conn.close()


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def add_api_key(conn: asyncpg.Connection, key: str, organization_id: str) -> None:
    await conn.execute(
        "INSERT INTO api_keys (digest, organization_id) VALUES ($1, $2::uuid)",
        hashlib.sha256(key.encode()).digest(),
        organization_id,
    )


async def insert_events(
    conn: asyncpg.Connection | asyncpg.Pool, organization_id: str, events: Sequence[UsageEvent]
) -> None:
    """One statement for the whole batch; duplicates are dropped by the unique index."""
    await conn.execute(
        INSERT_SQL,
        organization_id,
        [e.external_subscription_id for e in events],
        [e.transaction_id for e in events],
        [e.code for e in events],
        [e.timestamp for e in events],
        [orjson.dumps(e.properties).decode() for e in events],
        [e.precise_total_amount_cents for e in events],
    )


async def copy_events(
    conn: asyncpg.Connection, organization_id: str, events: Sequence[dict[str, Any]]
) -> None:
    """Bulk-load wire events (untimed set-up, so the read side has the same rows as Kafka)."""
    rows = [
        (
            organization_id,
            e["external_subscription_id"],
            e["transaction_id"],
            e["code"],
            datetime.fromtimestamp(float(e["timestamp"]), tz=UTC),
            json.dumps(e.get("properties") or {}),
        )
        for e in events
    ]
    await conn.copy_records_to_table(
        "events",
        records=rows,
        columns=[
            "organization_id",
            "external_subscription_id",
            "transaction_id",
            "code",
            "timestamp",
            "properties",
        ],
    )


async def stored_totals(
    conn: asyncpg.Connection, organization_id: str, code: str, field_name: str
) -> tuple[int, int, Decimal]:
    """An organization's rows: (all, those of `code`, the sum of `field_name` over those)."""
    row = await conn.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE code = $1), "
        "coalesce(sum((properties ->> $2)::numeric) FILTER (WHERE code = $1), 0) "
        "FROM events WHERE organization_id = $3::uuid",
        code,
        field_name,
        organization_id,
    )
    assert row is not None
    return row[0], row[1], Decimal(row[2])


async def current_usage(
    conn: asyncpg.Connection | asyncpg.Pool,
    organization_id: str,
    external_subscription_id: str,
    charges: Sequence[Charge],
    start: datetime,
    end: datetime,
) -> list[ChargeUsage]:
    """Units and event counts of each charge over [start, end), aggregated at read time."""
    found = []
    for charge in charges:
        if charge.aggregation_type == "count_agg":
            count = await conn.fetchval(
                COUNT_SQL, organization_id, external_subscription_id, charge.code, start, end
            )
            found.append(ChargeUsage(charge.code, count, Decimal(count)))
        elif charge.aggregation_type == "sum_agg":
            row = await conn.fetchrow(
                SUM_SQL,
                organization_id,
                external_subscription_id,
                charge.code,
                start,
                end,
                charge.field_name,
            )
            assert row is not None
            found.append(ChargeUsage(charge.code, row[0], Decimal(row[1])))
        else:
            raise ValueError(f"the baseline does not model {charge.aggregation_type}")
    return found


async def usage_of_all(
    conn: asyncpg.Connection | asyncpg.Pool,
    organization_id: str,
    start: datetime,
    end: datetime,
    sum_field: str,
) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(subscription, code) -> (events, sum of `sum_field`) for every subscription at once."""
    rows = await conn.fetch(ALL_USAGE_SQL, organization_id, start, end, sum_field)
    return {(r[0], r[1]): (r[2], Decimal(r[3])) for r in rows}


class BaselineServer:
    """`POST /api/v1/events/batch` storing rows, `GET /current-usage/{subscription}` reading
    them back with SQL; port 0 picks a free port."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        charges: Sequence[Charge],
        period: tuple[datetime, datetime],
        *,
        pool_size: int = 10,
        max_batch: int = 100,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.charges = list(charges)
        self.period = period
        self.pool_size = pool_size
        self.max_batch = max_batch
        self.port = 0
        self._pool: asyncpg.Pool | None = None
        self._runner: web.AppRunner | None = None
        self._keys: dict[bytes, str] = {}  # as meterflow's `web.key_cache` remembers keys

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "start() first"
        return self._pool

    async def _organization(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise web.HTTPUnauthorized()
        digest = hashlib.sha256(header[len("Bearer ") :].strip().encode()).digest()
        known = self._keys.get(digest)
        if known is not None:
            return known
        found = await self.pool.fetchval(
            "SELECT organization_id FROM api_keys WHERE digest = $1", digest
        )
        if found is None:
            raise web.HTTPUnauthorized()
        self._keys[digest] = str(found)
        return str(found)

    async def create_batch(self, request: web.Request) -> web.Response:
        """The common batch through ingest's own one-pass validation, anything else event by
        event as ingest reads it; one INSERT, answered after its commit."""
        organization_id = await self._organization(request)
        received_at = datetime.now(UTC)
        raw = await request.read()
        common = accept_batch(raw, organization_id, received_at, self.max_batch)
        if common is not None:
            wires, answer = common
            rows = msgspec.json.encode(wires)
            await self.pool.execute(INSERT_WIRE_SQL, organization_id, rows.decode())
            return web.Response(body=answer, content_type="application/json")
        body = orjson.loads(raw)
        raw_events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(raw_events, list) or not 0 < len(raw_events) <= self.max_batch:
            return web.json_response({"status": 422, "code": "validation_errors"}, status=422)
        try:
            parsed = [validate_event(raw, received_at) for raw in raw_events]
        except ValidationFailed as exc:
            return web.json_response(
                {"status": 422, "code": "validation_errors", "error_details": exc.error_details},
                status=422,
            )
        await insert_events(self.pool, organization_id, parsed)
        accepted = {"events": [event_body(e, received_at) for e in parsed]}
        return web.Response(body=orjson.dumps(accepted), content_type="application/json")

    async def usage(self, request: web.Request) -> web.Response:
        organization_id = await self._organization(request)
        subscription = request.match_info["external_subscription_id"]
        start, end = self.period
        found = await current_usage(
            self.pool, organization_id, subscription, self.charges, start, end
        )
        answer = {
            "charges_usage": [
                {"code": u.code, "events_count": u.events_count, "units": str(u.units)}
                for u in found
            ]
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def start(self, port: int = 0, *, reuse_port: bool = False) -> None:
        """Listen on `port` (0: any free one); with `reuse_port` several server processes
        share it (SO_REUSEPORT), as meterflow's ingest workers do."""
        self._pool = await create_pool(self.dsn, schema=self.schema, size=self.pool_size)
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/api/v1/events/batch", self.create_batch)
        app.router.add_get("/current-usage/{external_subscription_id}", self.usage)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_port=reuse_port)
        await site.start()
        server: Any = site._server  # aiohttp exposes the bound socket only here
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> BaselineServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    now = datetime.now(UTC)
    server = BaselineServer(args.dsn, args.schema, (), (now, now), pool_size=args.pool_size)
    await server.start(args.port, reuse_port=args.reuse_port)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    """One baseline server process until SIGTERM (`bench/ingest_batch.py` starts them)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--reuse-port", action="store_true")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
