"""One aggregator worker closing the periods of many subscriptions at once, at a period end
(`python -m bench.aggregator_period_end --worker S`; see that module's docstring)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import TopicPartition

from bench.aggregator_restart import BUSY, BUSY_MAX, CLOSED, STALL_MAX, STALLS, stalls_over
from bench.memory import (
    APPLIED,
    Case,
    bench_plan,
    case_events,
    send_catalog,
    subscription_record,
    worker_env,
)
from bench.processes import ServiceProcess, delete_app_topics, metrics
from bench.stall_profile import py_spy, stop_py_spy
from bench.workload import WrongTotals, produce_events
from meterflow.settings import Settings, Topics
from meterflow.topics import delete_topics, ensure_topics, reader

SKEW = 5.0  # METERFLOW_AGGREGATOR_CLOCK_SKEW's default, which the worker runs with
TIMEOUT = 1800.0
ANNIVERSARY = "anniversary"
LIMITS = ("0.1", "0.25", "0.5", "1.0")


def midnights(now: datetime, days: int) -> Iterator[tuple[str, datetime]]:
    """(zone, UTC instant) of each IANA zone's local midnight `days` after today's there."""
    for name in sorted(zoneinfo.available_timezones()):
        if name.startswith(("Etc/", "SystemV/")) or "/" not in name:
            continue
        zone = zoneinfo.ZoneInfo(name)
        local = now.astimezone(zone)
        midnight = datetime.combine(local.date() + timedelta(days=days), datetime.min.time(), zone)
        yield name, midnight.astimezone(UTC)


def last_midnight(now: datetime, margin: float = 120.0) -> tuple[str, datetime] | None:
    """(zone, UTC instant) of the latest local midnight at least `margin` seconds past."""
    past = [(at, name) for name, at in midnights(now, days=0) if at <= now - timedelta(0, margin)]
    return None if not past else max(past)[::-1]


def over(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, float]:
    """Wake-ups over each limit between the two samples (histogram `name`)."""
    return {
        limit: stalls_over(after, limit, name) - stalls_over(before, limit, name)
        for limit in LIMITS
    }


async def read_closes(settings: Settings) -> dict[str, int]:
    """Every message of the periods-closed topic: period_key -> events counted in it."""
    found: dict[str, int] = {}
    async with reader(settings.bootstrap_servers) as consumer:
        topic = settings.topics.periods_closed
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    body = orjson.loads(record.value)
                    charges = body["charges"]
                    if len(charges) != 2:
                        raise WrongTotals(f"{body['period_key']}: {len(charges)} charges")
                    found[body["period_key"]] = sum(c["events_count"] for c in charges)
    return found


async def measure_worker(
    base: Settings,
    subscriptions: int,
    zone: str,
    end: datetime,
    events: bool = True,
    profile: Path | None = None,
    keep_log: Path | None = None,
) -> Any:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = replace(base, topics=Topics(prefix=prefix))
    app_id = f"{prefix}aggregator"
    organization_id = str(uuid.uuid4())
    start = (end.astimezone(zoneinfo.ZoneInfo(zone)) - timedelta(days=7)).astimezone(UTC)
    case = Case(subscriptions, 1 if events else 0)
    found: dict[str, Any] = {"subscriptions": subscriptions, "zone": zone, "end": end.isoformat()}
    found["events"] = case.events
    await ensure_topics(settings.bootstrap_servers, settings.topics, settings.partitions)
    try:
        sample = bench_plan(organization_id, interval="weekly", timezone=zone)
        subs = (
            subscription_record(
                organization_id, i, subscription_at=start, billing_time="anniversary"
            )
            for i in range(subscriptions)
        )
        await send_catalog(settings, [*sample.records, *subs])
        stamp = min(time.time(), end.timestamp()) - 60  # inside the period
        await produce_events(settings, organization_id, case_events(case, stamp))
        with tempfile.TemporaryDirectory() as tmp:
            env, port, metrics_port = worker_env(
                settings,
                app_id,
                tmp,
                METERFLOW_AGGREGATOR_CLOCK_SKEW=str(SKEW),
                METERFLOW_AGGREGATOR_LOOP_SAMPLE_EVERY="0.005",  # what ran in a long wake-up
            )
            worker = ServiceProcess("aggregator", env, Path(tmp) / "aggregator.log")
            spy = None if profile is None else py_spy(worker.proc.pid, profile)

            async def sample_now() -> dict[str, float]:
                return await asyncio.to_thread(metrics, metrics_port)

            async def until(what: str, name: str, target: float) -> dict[str, float]:
                while (got := await sample_now()).get(name, 0.0) < target:
                    if worker.proc.poll() is not None:
                        raise worker.failed("exited")
                    if time.monotonic() - began > TIMEOUT:
                        raise worker.failed(f"{what}: {got.get(name)} of {target}")
                    await asyncio.sleep(0.2)
                return got

            try:
                began = time.monotonic()
                found["ready_seconds"] = round(await worker.wait_http(port, "/ready", 900), 1)
                applied = await until("applied", APPLIED, case.events)
                found["applied_seconds"] = round(time.monotonic() - began, 1)
                found["applied_before_end_s"] = round(end.timestamp() - time.time(), 1)
                if applied.get(CLOSED, 0.0):
                    # The periods were due before the events were all applied: measured
                    # from the end (+ skew), the close overlapped the apply.
                    found["closes_before_applied"] = applied.get(CLOSED)
                due = max(end.timestamp() + SKEW, time.time())
                await asyncio.sleep(max(0.0, due - time.time() - 0.5))
                before = await sample_now()
                cpu_before = sum(psutil.Process(worker.proc.pid).cpu_times()[:2])
                done = await until("closes", CLOSED, subscriptions)
                closed_at = time.time()
                cpu = sum(psutil.Process(worker.proc.pid).cpu_times()[:2]) - cpu_before
                # The worker's CPU (all its threads) per close: steadier than the rate on a
                # machine whose other processes take the cores in turns.
                found["cpu_us_per_close"] = round(cpu / subscriptions * 1e6)
                found["close_seconds"] = round(closed_at - due, 1)
                found["closes_per_second"] = round(subscriptions / max(closed_at - due, 1e-3))
                found["stalls_over_closing"] = over(before, done, STALLS)
                found["busy_over_closing"] = over(before, done, BUSY)
                found["stall_max_ms_since_start"] = round(done.get(STALL_MAX, 0.0) * 1e3)
                found["busy_max_ms_since_start"] = round(done.get(BUSY_MAX, 0.0) * 1e3)
                found["stall_max_ms_before_closing"] = round(before.get(STALL_MAX, 0.0) * 1e3)
                found["busy_max_ms_before_closing"] = round(before.get(BUSY_MAX, 0.0) * 1e3)
                found["rss_mb"] = round(worker.rss() / 2**20)
            finally:
                if spy is not None:
                    stop_py_spy(spy)
                worker.stop()
                if profile is not None and keep_log is None:
                    keep_log = profile.with_suffix(".log")
                if keep_log is not None:
                    shutil.copyfile(Path(tmp) / "aggregator.log", keep_log)
        closes = await read_closes(settings)
        wrong = {key: n for key, n in closes.items() if n != 2 * case.events_per_key}
        if len(closes) != subscriptions or wrong:
            raise WrongTotals(f"{len(closes)} periods emitted of {subscriptions}; wrong: {wrong}")
        found["periods_emitted"] = len(closes)
    finally:
        await delete_app_topics(settings, app_id)
        await delete_topics(settings.bootstrap_servers, settings.topics)
    return found
