"""Period end to invoice: the time from a billing period's end to its invoice being readable
through `GET /api/v1/invoices` (issue 11: within 60 s when producers are up to date), with
ingest, the aggregator and the invoicer as real processes on their defaults.

    .venv/bin/python -m bench.aggregator_period_end [--subscriptions 5] [--max-wait 20]

Periods end at local midnights, so the bench looks among the IANA zones for the soonest
local midnight at least 90 s away (and at most `--max-wait` minutes), gives its customers
that zone, and subscribes them to a weekly plan billed on the anniversary of a start exactly
one week before that midnight: their first period ends then. Each subscription gets events
until a few seconds before the end (answered 200); then the bench polls
`GET /api/v1/invoices?external_customer_id=...` every 100 ms until every invoice is there
and checks it bills exactly those events. Prints each delay after the end, writes JSON to
bench/results/. One run per midnight: run it again at the next one for another.

    .venv/bin/python -m bench.aggregator_period_end --worker 1000000 [--end last|next]

The same period end at scale, the aggregator alone (no ingest, no invoicer): its catalog
written straight to the catalog topic (S subscriptions, customers in the zone, the weekly
plan with two charges), one event per charge on the events topic, then one worker started.
`--end next` waits for the soonest local midnight at least `--lead` seconds away; `--end
last` takes the latest one past, so every period is due as soon as the worker has applied
the events (the closer waits for the stream to be read past the end + clock skew either
way). Measured from the instant the periods are due (the end + skew, or the last event
applied if later) until the worker's `periods_closed` counter shows S: seconds, closes per
second, the event loop's stalls meanwhile (its own histograms, by bucket; the longest since
start); then the periods-closed topic is read whole: S distinct `period_key`s, each with both
charges and one event on each (none with `--no-events`), or the run fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/aggregator_period_end.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from bench import report
from bench.aggregator_termination import create_count_plan, scratch_api, subscribe_customers
from bench.period_end_worker import last_midnight, measure_worker, midnights
from bench.public_api import expect_ok
from bench.workload import WrongTotals, count_event
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack

PLAN = "bench-weekly"
EVENTS = 20


def next_midnight(
    now: datetime, max_wait: timedelta, lead: float = 90.0
) -> tuple[str, datetime] | None:
    """(zone, UTC instant) of the soonest local midnight in [now + lead s, now + max_wait]."""
    best: tuple[str, datetime] | None = None
    for name, at in midnights(now, days=1):
        if now + timedelta(seconds=lead) <= at <= now + max_wait and (best is None or at < best[1]):
            best = (name, at)
    return best


async def run(base: Settings, args: argparse.Namespace) -> dict[str, Any]:
    found = next_midnight(datetime.now(UTC), timedelta(minutes=args.max_wait))
    if found is None:
        raise SystemExit(f"no local midnight within {args.max_wait} minutes")
    zone, end = found
    start = (end.astimezone(zoneinfo.ZoneInfo(zone)) - timedelta(days=7)).astimezone(UTC)
    print(f"period end {end.isoformat()} ({zone} midnight)", flush=True)
    delays: list[float] = []
    async with scratch_api(base, "bench-period-end") as (session, url):
        await create_catalog(session, url, args.subscriptions, zone, start)
        sent = 0
        while time.time() < end.timestamp() - 5:
            await send_events(session, url, args.subscriptions, sent)
            sent += 1
            await asyncio.sleep(1.0)
        await asyncio.sleep(max(0.0, end.timestamp() - time.time()))
        waiting = set(range(args.subscriptions))
        while waiting:
            for i in sorted(waiting):
                query = f"{url}/api/v1/invoices?external_customer_id=pe-cust-{i}"
                async with session.get(query) as response:
                    body = orjson.loads(await expect_ok(response, "GET invoices"))
                if body["invoices"]:
                    delays.append(time.time() - end.timestamp())
                    check(body["invoices"][0], i, sent)
                    waiting.discard(i)
            if time.time() - end.timestamp() > 300:
                raise WrongTotals(f"no invoice 300 s after the end for {waiting}")
            await asyncio.sleep(0.1)
    return {
        "zone": zone,
        "period_end": end.isoformat(),
        "subscriptions": args.subscriptions,
        "median_s": round(report.median(delays), 2),
        "max_s": round(max(delays), 2),
        "delays_s": [round(d, 2) for d in delays],
    }


def check(invoice: dict[str, Any], i: int, batches: int) -> None:
    expected = batches * EVENTS  # 0.01 per event: one cent each
    billed = int(invoice.get("fees_amount_cents") or 0)
    if billed != expected:
        raise WrongTotals(f"pe-sub-{i}: the invoice bills {billed} cents for {expected} events")


async def send_events(session: aiohttp.ClientSession, url: str, subscriptions: int, n: int) -> None:
    stamp = time.time()
    made = [
        count_event(f"pe-{i}-{n}-{k}", f"pe-sub-{i}", stamp)
        for i in range(subscriptions)
        for k in range(EVENTS)
    ]
    async with session.post(f"{url}/api/v1/events/batch", json={"events": made}) as response:
        await expect_ok(response, "events")


async def create_catalog(
    session: aiohttp.ClientSession, url: str, subscriptions: int, zone: str, start: datetime
) -> None:
    await create_count_plan(session, url, PLAN, "weekly")
    await subscribe_customers(
        session,
        url,
        subscriptions,
        prefix="pe-",
        plan=PLAN,
        billing_time="anniversary",
        subscription_at=start,
        timezone=zone,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--max-wait", type=float, default=20.0, help="minutes")
    parser.add_argument("--worker", type=int, default=0, help="S subscriptions, worker alone")
    parser.add_argument("--end", choices=["last", "next"], default="last")
    parser.add_argument("--lead", type=float, default=90.0, help="seconds to set up (next)")
    parser.add_argument("--no-events", action="store_true", help="close periods without events")
    parser.add_argument(
        "--profile",
        type=Path,
        help="--worker: py-spy's Chrome trace of the worker there (read by bench.stall_profile)",
    )
    parser.add_argument("--log", type=Path, help="--worker: keep the worker's log there")
    args = parser.parse_args()
    base = Settings.from_env()
    LocalStack.from_settings(base).start()  # reuses a running Kafka and Postgres
    machine = asyncio.run(report.machine_facts(base))
    if args.worker:
        now = datetime.now(UTC)
        chosen = (
            last_midnight(now)
            if args.end == "last"
            else next_midnight(now, timedelta(minutes=args.max_wait), args.lead)
        )
        if chosen is None:
            raise SystemExit(f"no local midnight within {args.max_wait} minutes")
        print(f"period end {chosen[1].isoformat()} ({chosen[0]} midnight)", flush=True)
        found = asyncio.run(
            measure_worker(base, args.worker, *chosen, not args.no_events, args.profile, args.log)
        )
        report.print_table(["measure", "value"], [[k, v] for k, v in found.items()])
        report.write_record("aggregator_period_end_worker", machine, found)
        return
    result = asyncio.run(run(base, args))
    report.print_table(
        ["zone", "period end", "invoices", "median s after end", "max s"],
        [
            [
                result["zone"],
                result["period_end"],
                len(result["delays_s"]),
                result["median_s"],
                result["max_s"],
            ]
        ],
    )
    report.write_record(
        "aggregator_period_end",
        machine,
        {
            "result": result,
        },
    )


if __name__ == "__main__":
    main()
