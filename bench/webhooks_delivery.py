"""Webhook delivery on the real Postgres: N webhooks are queued first (one organization, one
endpoint, a local receiver answering 200 at once), then an in-process worker delivers them;
the clock runs from its start until the last one is marked delivered.

    .venv/bin/python bench/webhooks_delivery.py [N] [--concurrency 16]

Reports deliveries per second and the receiver-side latency from queueing to arrival (which,
for webhooks queued before the worker started, is mostly waiting in the queue). Prints a
table and writes JSON to bench/results/ (git-ignored). Uses its own database schema, removed
afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/webhooks_delivery.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bench import report
from meterflow import webhook_outbox
from meterflow.db import connect, migrate, use_orjson
from meterflow.settings import Settings
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker


async def _receiver(arrivals: list[float]) -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrivals.append(time.time())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    return runner, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"


async def run(n: int, concurrency: int) -> dict[str, Any]:
    base = Settings.from_env()
    settings = replace(base, db_schema=f"bench_{uuid.uuid4().hex[:8]}")
    await migrate(settings.dsn, schema=settings.db_schema)
    conn = await connect(settings.dsn, schema=settings.db_schema)
    await use_orjson(conn)
    arrivals: list[float] = []
    runner, url = await _receiver(arrivals)
    try:
        org = uuid.uuid4()
        await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Bench')", org)
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, organization_id, webhook_url, signature_algo) "
            "VALUES ($1, $2, $3, 'hmac')",
            uuid.uuid4(),
            org,
            url,
        )
        queued_at = time.time()
        async with conn.transaction():
            for i in range(n):
                await webhook_outbox.emit(
                    conn, org, "customer.created", uuid.uuid4(), {"lago_id": str(i)}
                )
        config = WebhookSettings(metrics_port=0, concurrency=concurrency, per_endpoint=concurrency)
        worker = WebhookWorker(settings, config)
        await worker.start()
        started = time.monotonic()
        task = asyncio.create_task(worker.run())
        try:
            while (
                done := await conn.fetchval(
                    "SELECT count(*) FROM webhooks WHERE status = 'succeeded'"
                )
            ) < n:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
        finally:
            worker.stop.set()
            await task
            await worker.close()
    finally:
        await runner.cleanup()
        await conn.close()
        admin = await connect(settings.dsn)
        try:
            await admin.execute(f'DROP SCHEMA "{settings.db_schema}" CASCADE')
        finally:
            await admin.close()
    waits = [a - queued_at for a in arrivals]
    return {
        "benchmark": "webhooks_delivery",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": await report.machine_facts(base),
        "webhooks": n,
        "delivered": done,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(done / elapsed, 1),
        "queued_to_arrival_p50_s": round(report.p50(waits), 3),
        "queued_to_arrival_p99_s": round(report.p99(waits), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    result = asyncio.run(run(args.n, args.concurrency))
    report.print_table(
        ["webhooks", "concurrency", "seconds", "deliveries/s", "p50 s", "p99 s"],
        [
            [
                result["webhooks"],
                result["concurrency"],
                result["seconds"],
                result["deliveries_per_second"],
                result["queued_to_arrival_p50_s"],
                result["queued_to_arrival_p99_s"],
            ]
        ],
    )
    print(f"written to {report.write_json('webhooks_delivery', result)}")


if __name__ == "__main__":
    main()
