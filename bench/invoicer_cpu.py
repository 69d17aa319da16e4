"""The invoicer's own CPU per invoice, step by step, without Kafka and without executing the
write: parsing the messages, planning the rounds, the read (its Python side: asyncpg and
building the terms), pricing, and building and encoding the write's documents.

    PYTHONPATH=src .venv/bin/python -m bench.invoicer_cpu [N] [--subscriptions 250]
        [--repeats 7]

The closed periods are bench.invoicer_throughput's (N of them, rounds of one period per
subscription). Each step's figure is the least CPU time (`time.process_time`) over the
repeats, in microseconds per invoice: far less noisy than a throughput run on a shared
machine, so it compares two trees run one after the other (`PYTHONPATH=<tree>/src`). The
write stops just before its statement would run, so nothing is written and every round reads
the same catalog; the Postgres side is bench.invoicer_throughput's to measure.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/invoicer_cpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import time
import uuid
from typing import Any

from bench import invoicer_throughput
from invoicer.rounds import next_round
from invoicing import terms, write
from invoicing.closed_period import LateUsage, PeriodClosed, parse_message
from invoicing.pricing import price_period
from meterflow.db import connect, migrate
from meterflow.settings import Settings

STEPS = ("parse", "plan", "read", "price", "rows")


class _Stopped(Exception):
    """Raised where the write's statement would run."""


async def _stop(*_: Any) -> Any:
    raise _Stopped


class _NoTransaction:
    """A connection's stand-in for the write: its transaction does nothing."""

    def transaction(self) -> _NoTransaction:
        return self

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


async def _once(pool: Any, raw: list[bytes], spent: dict[str, float]) -> None:
    """One pass over the messages, adding each step's CPU seconds to `spent`."""
    clock = time.process_time
    started = clock()
    pending: list[PeriodClosed | LateUsage] = [parse_message(value) for value in raw]
    spent["parse"] += clock() - started
    async with pool.acquire() as conn:
        while pending:
            started = clock()
            plan = next_round(pending, 1000)
            batch = [pending[i] for i in plan.closes]
            chosen = {id(message) for message in batch}
            pending = [message for message in pending if id(message) not in chosen]
            read = clock()
            loaded_all = await terms.load_many(conn, batch)
            priced = clock()
            items = []
            for closed, loaded in zip(batch, loaded_all, strict=True):
                assert isinstance(closed, PeriodClosed) and loaded is not None
                invoice = price_period(closed, loaded.terms, loaded.invoiced)
                items.append(write.InvoiceToWrite(closed, loaded, invoice))
            rows = clock()
            with contextlib.suppress(_Stopped):
                await write.write_invoices(_NoTransaction(), items)  # type: ignore[arg-type]
            done = clock()
            for step, seconds in zip(
                STEPS[1:], (read - started, priced - read, rows - priced, done - rows), strict=True
            ):
                spent[step] += seconds


async def measure(n: int, subscriptions: int, repeats: int) -> dict[str, float]:
    """Each step's least CPU over `repeats` passes, in microseconds per invoice."""
    settings = Settings.from_env()
    schema = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    await migrate(settings.dsn, schema=schema)
    conn = await connect(settings.dsn, schema=schema)
    execute = write._execute
    write._execute = _stop  # type: ignore[assignment]
    try:
        catalog = await invoicer_throughput._catalog(conn, subscriptions)
        raw = [
            invoicer_throughput._closed(catalog, i % subscriptions, i // subscriptions)[1]
            for i in range(n)
        ]
        pool = await write.create_pool(settings.dsn, schema=schema, size=1)
        best = dict.fromkeys(STEPS, float("inf"))
        try:
            for _ in range(repeats):
                spent = dict.fromkeys(STEPS, 0.0)
                await _once(pool, raw, spent)
                best = {step: min(best[step], spent[step]) for step in STEPS}
        finally:
            await pool.close()
    finally:
        write._execute = execute
        await conn.close()
        admin = await connect(settings.dsn)
        try:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await admin.close()
    result = {step: round(best[step] / n * 1e6, 1) for step in STEPS}
    result["total"] = round(sum(result.values()), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="closed periods")
    parser.add_argument("--subscriptions", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(measure(args.n, args.subscriptions, args.repeats))
    print("invoicer CPU, us per invoice: " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
