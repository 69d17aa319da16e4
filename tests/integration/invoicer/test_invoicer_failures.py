"""The invoicer under failure: SIGKILL between the database commit and the offset commit,
a Postgres outage, and a clean SIGTERM, each leaving exactly one invoice per period."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meterflow.settings import Settings


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _invoicer_process(
    settings: Settings, group: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": settings.dsn,
        "METERFLOW_DB_SCHEMA": settings.db_schema,
        "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
        "METERFLOW_INVOICER_GROUP": group,
        "METERFLOW_INVOICER_METRICS_PORT": "0",
        "METERFLOW_INVOICER_METRICS_HOST": "127.0.0.1",
        **extra,
    }
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "invoicer"], env=env, stderr=sink)


async def _started(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the process logs that it consumes (its signal handlers are in place)."""
    deadline = time.monotonic() + timeout
    while "invoicer.started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the invoicer did not start:\n{log.read_text()}")
        await asyncio.sleep(0.1)


async def _exit_code(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("the invoicer process did not exit in time")
        await asyncio.sleep(0.1)
    return proc.returncode


async def test_sigkill_between_db_commit_and_offset_commit_leaves_one_invoice(
    kit: Any, settings: Settings, unique: str, tmp_path: Path
) -> None:
    catalog = await kit.catalog()
    january = catalog.closed(
        utc(2026, 1, 15, 10),
        utc(2026, 2, 1),
        [catalog.usage(catalog.standard_charge, "standard", 7)],
    )
    await kit.publish(january)
    group = f"invoicer-crash-{unique}"
    crashing = _invoicer_process(
        settings, group, tmp_path / "crash.log", METERFLOW_INVOICER_FAULT="kill_after_db_commit"
    )
    assert await _exit_code(crashing) == -signal.SIGKILL
    # The invoice committed, its offset did not: the restart gets the message again.
    assert await kit.invoices() == 1
    assert await kit.committed(group) == 0

    february = catalog.closed(
        utc(2026, 2, 1), utc(2026, 3, 1), [catalog.usage(catalog.standard_charge, "standard", 9)]
    )
    await kit.publish(february)
    restarted = _invoicer_process(settings, group, tmp_path / "restart.log")
    try:
        await _started(tmp_path / "restart.log", restarted)
        await kit.wait_for_invoices(2)
        deadline = time.monotonic() + 30
        while await kit.committed(group) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await _exit_code(restarted) == 0
    assert await kit.committed(group) == 2
    rows = await kit.db.fetch(
        "SELECT period_start, total_amount_cents, sequential_id FROM invoices ORDER BY period_start"
    )
    # 548 + 7 x 5 cents; 1000 + 9 x 5 cents.
    assert [(r["total_amount_cents"], r["sequential_id"]) for r in rows] == [(583, 1), (1045, 2)]


async def test_sigterm_finishes_and_commits_what_it_started(
    kit: Any, settings: Settings, unique: str, tmp_path: Path
) -> None:
    catalog = await kit.catalog()
    messages = [catalog.closed(utc(2026, m, 1), utc(2026, m + 1, 1), []) for m in range(2, 12)]
    group = f"invoicer-term-{unique}"
    proc = _invoicer_process(settings, group, tmp_path / "first.log")
    try:
        await _started(tmp_path / "first.log", proc)
        await kit.publish(*messages)
        await kit.wait_for_invoices(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await _exit_code(proc) == 0
    # Whatever it invoiced before stopping is committed, nothing beyond.
    invoiced = await kit.invoices()
    assert await kit.committed(group) == invoiced
    restarted = _invoicer_process(settings, group, tmp_path / "second.log")
    try:
        await _started(tmp_path / "second.log", restarted)
        await kit.wait_for_invoices(10)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await _exit_code(restarted) == 0
    assert await kit.invoices() == 10
    assert await kit.committed(group) == 10


async def test_postgres_outage_pauses_the_invoicer_and_loses_nothing(
    kit: Any,
    settings: Settings,
    postgres_proxy: Any,
    start_invoicer: Callable[..., Any],
) -> None:
    catalog = await kit.catalog()
    months = [catalog.closed(utc(2026, m, 1), utc(2026, m + 1, 1), []) for m in range(2, 12)]
    proxied = replace(
        settings, database_url=f"postgresql://postgres@127.0.0.1:{postgres_proxy.port}/postgres"
    )
    await kit.publish(*months[:3])
    async with start_invoicer(proxied) as invoicer:
        await kit.wait_for_invoices(3)
        await postgres_proxy.cut()
        await kit.publish(*months[3:])
        await asyncio.sleep(2)
        assert await kit.invoices() == 3
        failures = invoicer.metrics.registry.get_sample_value(
            "invoicer_failures_total", {"kind": "database_unavailable"}
        )
        assert failures and failures > 0
        assert await kit.committed(invoicer.config.group_id) == 3
        await postgres_proxy.restore()
        await kit.wait_for_invoices(10)
        deadline = time.monotonic() + 30
        while await kit.committed(invoicer.config.group_id) < 10:
            assert time.monotonic() < deadline, "offsets were not committed after the outage"
            await asyncio.sleep(0.2)
        dead = invoicer.metrics.registry.get_sample_value(
            "invoicer_dead_lettered_total", {"reason": "unexpected_error"}
        )
        assert not dead
    assert await kit.invoices() == 10
    assert await kit.db.fetchval("SELECT count(DISTINCT period_key) FROM invoices") == 10
