"""Supervision under `meterflow up`: the aggregator SIGKILLed during a load is restarted
within 30 s while ingest keeps answering 200, and the totals equal what was sent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from meterflow.settings import Settings
from support.meterflow_up import CLI, LagoHttp, MeterflowUp, stack_with_catalog


async def send_load(api: LagoHttp, stop: asyncio.Event, sent: Counter[str]) -> int:
    """Batches of 20 events over 4 subscriptions until `stop`; every batch must get a 200.
    Each batch is sent twice (a client retry) and counted once."""
    batches, n = 0, 0
    now = int(time.time())
    while not stop.is_set():
        events = []
        for _ in range(20):
            sub = f"sub-{n % 4}"
            events.append(
                {
                    "transaction_id": f"t{n}",
                    "external_subscription_id": sub,
                    "code": "calls",
                    "timestamp": now,
                }
            )
            sent[sub] += 1
            n += 1
        for _ in range(2):
            status, body = await api.call("POST", "/api/v1/events/batch", {"events": events})
            assert status == 200, f"ingest answered {status} during the load: {body}"
        batches += 1
        await asyncio.sleep(0.05)
    return batches


async def test_sigkilled_aggregator_is_restarted_while_ingest_keeps_serving(
    settings: Settings, tmp_path: Path
) -> None:
    subs = [f"sub-{i}" for i in range(4)]
    async with stack_with_catalog(settings, tmp_path, subs) as (up, api):
        before = await up.status()
        ingest_pid = next(s["pid"] for s in before["services"] if s["name"] == "ingest")
        assert {c["name"]: c["ready"] for c in before["components"]} == {
            "kafka": True,
            "postgres": True,
        }

        sent: Counter[str] = Counter()
        stop = asyncio.Event()
        load = asyncio.create_task(send_load(api, stop, sent))
        await asyncio.sleep(3)
        victim = (await up.service("aggregator"))["pid"]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        while True:
            aggregator = await up.service("aggregator")
            if aggregator["ready"] and aggregator["pid"] not in (None, victim):
                break
            assert not load.done(), load.exception()
            assert time.monotonic() - killed_at < 30, f"not back in 30 s:\n{up.log()[-4000:]}"
            await asyncio.sleep(0.5)
        back_in = time.monotonic() - killed_at
        await asyncio.sleep(2)
        stop.set()
        batches = await load
        assert aggregator["restarts"] == 1
        assert aggregator["last_exit"] == "killed by SIGKILL"
        ingest = await up.service("ingest")
        assert (ingest["pid"], ingest["restarts"]) == (ingest_pid, 0), "ingest never stopped"
        printed = up.log()
        assert f"aggregator (pid {victim}) killed by SIGKILL; restarting it in 1s" in printed
        assert "aggregator restarted (pid" in printed

        expected = {sub: (str(sent[sub]), sent[sub]) for sub in subs}
        found: dict[str, tuple[str, int]] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for sub in subs:
                usage = await api.usage("acme", sub)
                if usage is not None:
                    found[sub] = usage["calls"]
            if found == expected:
                break
            await asyncio.sleep(1)
        assert found == expected, f"totals differ from what was sent ({batches} batches)"
        print(f"supervision: aggregator back in {back_in:.1f}s, {sum(sent.values())} events")
    assert not (tmp_path / "state" / "up.json").exists()


async def test_up_gives_up_on_a_service_that_keeps_failing(
    settings: Settings, tmp_path: Path
) -> None:
    """The invoicer cannot bind its metrics port (taken): it exits at once, is restarted
    after 1, 2, 4 and 8 s, and its fifth failure within a minute stops everything, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        up = MeterflowUp.for_test(settings, tmp_path, METERFLOW_INVOICER_METRICS_PORT=port)
        with up.log_path.open("ab") as log:
            up.proc = subprocess.Popen(
                [*CLI, "up"], env=up.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            code = await asyncio.to_thread(up.proc.wait, 120)
        finally:
            up.stop()
    printed = up.log()
    assert code == 1, printed[-3000:]
    for delay in (1, 2, 4, 8):
        assert f"restarting it in {delay}s (failure" in printed
    assert "its 5th failure within 60s: giving up, stopping everything" in printed
    assert "meterflow is up" not in printed
    assert "meterflow: stopped" in printed
