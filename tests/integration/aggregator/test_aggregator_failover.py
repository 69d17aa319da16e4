"""Two aggregator workers of one app, each its own command (as on two machines), asked
through the client every service shares (`meterflow.aggregator_usage`, both workers in
METERFLOW_AGGREGATOR_URL): when one is SIGKILLed, the other answers at once for its own
subscriptions, says 503 `owner_unavailable` (not a failure) for the dead one's until the
group hands it their partitions, and then answers for all of them, with the right totals;
when one stops answering without refusing (SIGSTOP: connections accepted, never answered),
the other gives up forwarding to it within its forward timeout, before its client does."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from tests.integration.aggregator.conftest import (
    AggregatorProcess,
    publish_requests,
    wait_partitions_shared,
)
from tests.integration.aggregator.test_aggregator_crash import Totals, retried_workload, settle

from meterflow.aggregator_usage import Answer, UsageClient
from meterflow.settings import Settings

SUBSCRIPTIONS = 20


def totals(answer: Answer) -> tuple[int, Decimal]:
    usage = orjson.loads(answer.body)["customer_usage"]
    charges = {c["billable_metric"]["code"]: c for c in usage["charges_usage"]}
    return charges["calls"]["events_count"], Decimal(charges["gb"]["units"])


async def ask_all(
    client: UsageClient, http: aiohttp.ClientSession, org: str, subscriptions: int
) -> dict[str, Answer]:
    return {f"s{i}": await client.get(http, f"s{i}", org) for i in range(subscriptions)}


async def two_workers(
    settings: Settings,
    worker_factory: Any,
    unique: str,
    *,
    session_timeout: str,
    events: int,
    retries: int,
) -> tuple[AggregatorProcess, AggregatorProcess, str, Totals]:
    """Two workers (separate commands) sharing the partitions, with SUBSCRIPTIONS'
    `events` (and `retries` resends) applied: the workers, the organization and its totals."""
    rng = random.Random(unique)
    org = f"org-{unique}"
    stream, expected = await retried_workload(settings, org, rng, SUBSCRIPTIONS, events, retries)
    overrides = {"METERFLOW_AGGREGATOR_SESSION_TIMEOUT": session_timeout}
    first, second = (worker_factory(**overrides) for _ in "12")
    for worker in (first, second):
        worker.start()
    await wait_partitions_shared([first, second], settings.partitions)
    await publish_requests(settings, stream, rng)
    await settle(second, org, SUBSCRIPTIONS, expected)
    return first, second, org, expected


async def test_a_dead_worker_costs_only_its_own_subscriptions_until_the_rebalance(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    # A dead member's partitions move after the session timeout: 20 s leaves the test a
    # wide window to see the worker left alone before the rebalance.
    first, second, org, expected = await two_workers(
        settings, worker_factory, unique, session_timeout="20", events=2_000, retries=200
    )

    client = UsageClient((first.url, second.url))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        before = await ask_all(client, http, org, SUBSCRIPTIONS)
        assert {s: totals(a) for s, a in before.items()} == expected
        assert {a.url.split("/current-usage")[0] for a in before.values()} == {first.url}

        first.kill()
        alone = await ask_all(client, http, org, SUBSCRIPTIONS)
        assert {a.url.split("/current-usage")[0] for a in alone.values()} == {second.url}
        served = {s: totals(a) for s, a in alone.items() if a.status == 200}
        waiting = {s: orjson.loads(a.body) for s, a in alone.items() if a.status != 200}
        assert served and served == {s: expected[s] for s in served}, "the survivor's own"
        assert waiting, "the dead worker's subscriptions wait for the rebalance"
        assert all(b["status"] == 503 for b in waiting.values()), waiting
        assert {b["code"] for b in waiting.values()} == {"owner_unavailable"}
        assert second.log_path.read_text().count("aggregator.owner_unreachable") == 1
        counted = await second.metric("meterflow_aggregator_usage_unavailable_total")
        assert counted >= len(waiting), "every 503 counted, one line logged"

        deadline = time.monotonic() + 120
        found: Totals | None = None
        while found != expected:
            assert time.monotonic() < deadline, f"after the rebalance: {found}"
            await asyncio.sleep(1.0)
            answers = await ask_all(client, http, org, SUBSCRIPTIONS)
            if all(a.status == 200 for a in answers.values()):
                found = {s: totals(a) for s, a in answers.items()}
    _, body = await second.get("/ready")
    assert body["partitions"] == list(range(settings.partitions)), body


async def test_an_owner_that_never_answers_costs_its_forwards_seconds_not_minutes(
    settings: Settings, worker_factory: Any, unique: str
) -> None:
    first, second, org, expected = await two_workers(
        settings, worker_factory, unique, session_timeout="30", events=400, retries=0
    )

    client = UsageClient((second.url,))
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(client.get(http, f"s{i}", org) for i in range(SUBSCRIPTIONS))
            )
            took = time.monotonic() - started
    finally:
        first.proc.send_signal(signal.SIGCONT)
    statuses = sorted({a.status for a in answers})
    assert statuses == [200, 503], statuses
    assert all(totals(a) == expected[f"s{i}"] for i, a in enumerate(answers) if a.status == 200)
    codes = {orjson.loads(a.body)["code"] for a in answers if a.status == 503}
    assert codes == {"owner_unavailable"}
    # The forward timeout (3 s), well under ingest's 5 s and aiohttp's default 5 minutes.
    assert 2.5 < took < 4.5, took
