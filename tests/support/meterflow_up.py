"""`meterflow up` as a real process for end-to-end tests, run against the shared Kafka and
Postgres (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL) with the test's own topics, schema, state
dir and free ports; and a small Lago HTTP client to create a catalog and send usage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from meterflow.settings import Settings
from support.services import free_port, service_env

CLI = [sys.executable, "-m", "meterflow.cli"]


@dataclass
class MeterflowUp:
    """One `meterflow up`, its environment and ports, and its output in `log_path`."""

    env: dict[str, str]
    ports: dict[str, int]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_test(cls, settings: Settings, tmp_path: Path, **overrides: str) -> MeterflowUp:
        names = ("api", "api_metrics", "agg", "agg_metrics", "inv", "webhooks", "exporter")
        ports = {name: free_port() for name in names}
        defaults = dict(
            METERFLOW_INGEST_HOST="127.0.0.1",
            METERFLOW_INGEST_PORT=str(ports["api"]),
            METERFLOW_INGEST_METRICS_PORT=str(ports["api_metrics"]),
            METERFLOW_INGEST_OUTBOX_INTERVAL="0.5",
            METERFLOW_AGGREGATOR_URL=f"http://127.0.0.1:{ports['agg']}",
            METERFLOW_AGGREGATOR_PORT=str(ports["agg"]),
            METERFLOW_AGGREGATOR_METRICS_PORT=str(ports["agg_metrics"]),
            METERFLOW_AGGREGATOR_BATCH_WITHIN="0.05",
            METERFLOW_AGGREGATOR_SESSION_TIMEOUT="6",
            METERFLOW_AGGREGATOR_COMMIT_INTERVAL="0.5",
            METERFLOW_INVOICER_GROUP=f"{settings.topics.prefix}invoicer",
            METERFLOW_INVOICER_METRICS_HOST="127.0.0.1",
            METERFLOW_INVOICER_METRICS_PORT=str(ports["inv"]),
            METERFLOW_WEBHOOKS_METRICS_HOST="127.0.0.1",
            METERFLOW_WEBHOOKS_METRICS_PORT=str(ports["webhooks"]),
            METERFLOW_EXPORTER_HOST="127.0.0.1",
            METERFLOW_EXPORTER_PORT=str(ports["exporter"]),
            METERFLOW_EXPORTER_INTERVAL="1",
        )
        env = service_env(settings, tmp_path / "state", **{**defaults, **overrides})
        return cls(env=env, ports=ports, log_path=tmp_path / "up.log")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, timeout: float = 150.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while "meterflow is up" not in self.log():
            assert self.proc.poll() is None, f"`meterflow up` exited early:\n{self.log()}"
            assert time.monotonic() < deadline, (
                f"`meterflow up` not up in {timeout}s:\n{self.log()}"
            )
            await asyncio.sleep(0.5)

    async def cli(
        self, *args: str, timeout: float = 120.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `meterflow <args>` with this stack's environment (and `env` over it)."""
        return await asyncio.to_thread(
            subprocess.run,
            [*CLI, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    async def status(self) -> dict[str, Any]:
        done = await self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    async def service(self, name: str) -> dict[str, Any]:
        services = {s["name"]: s for s in (await self.status())["services"]}
        return services[name]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


class LagoHttp:
    """The few Lago API calls the operations tests need, over plain HTTP."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base_url + path, json=body) as response:
            payload = await response.json(content_type=None)
            return response.status, payload

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = await self.call(method, path, body)
        assert status == 200, f"{method} {path} answered {status}: {payload}"
        return payload

    async def simple_catalog(self, customer: str, subscriptions: list[str]) -> None:
        """A USD customer on plan `basic` (10.00 a month, `calls` counted at 0.01 each,
        `gb` summed at 0.50 each), subscribed since the month's start, once per id."""
        await self.ok(
            "POST",
            "/api/v1/customers",
            {"customer": {"external_id": customer, "name": customer, "currency": "USD"}},
        )
        for code, aggregation, field_name in (
            ("calls", "count_agg", None),
            ("gb", "sum_agg", "gb"),
        ):
            metric = {"name": code, "code": code, "aggregation_type": aggregation}
            if field_name:
                metric["field_name"] = field_name
            await self.ok("POST", "/api/v1/billable_metrics", {"billable_metric": metric})
        metrics = (await self.ok("GET", "/api/v1/billable_metrics"))["billable_metrics"]
        ids = {m["code"]: m["lago_id"] for m in metrics}
        charges = [
            {
                "billable_metric_id": ids["calls"],
                "charge_model": "standard",
                "properties": {"amount": "0.01"},
            },
            {
                "billable_metric_id": ids["gb"],
                "charge_model": "standard",
                "properties": {"amount": "0.50"},
            },
        ]
        plan = {
            "name": "Basic",
            "code": "basic",
            "interval": "monthly",
            "amount_cents": 1000,
            "amount_currency": "USD",
            "pay_in_advance": False,
            "charges": charges,
        }
        await self.ok("POST", "/api/v1/plans", {"plan": plan})
        for external_id in subscriptions:
            await self.subscribe(customer, external_id)

    async def subscribe(self, customer: str, external_id: str) -> None:
        """The customer on plan `basic` since the start of the month (UTC)."""
        subscription = {
            "subscription_at": datetime.now(UTC).strftime("%Y-%m-01T00:00:00Z"),
            "external_customer_id": customer,
            "plan_code": "basic",
            "external_id": external_id,
            "billing_time": "calendar",
        }
        await self.ok("POST", "/api/v1/subscriptions", {"subscription": subscription})

    async def usage(self, customer: str, subscription: str) -> dict[str, tuple[str, int]] | None:
        """units and events per metric code of the current period, None while unavailable."""
        path = f"/api/v1/customers/{customer}/current_usage?external_subscription_id={subscription}"
        status, payload = await self.call("GET", path)
        if status != 200:
            return None
        return {
            c["billable_metric"]["code"]: (c["units"], c["events_count"])
            for c in payload["customer_usage"]["charges_usage"]
        }


async def create_key(up: MeterflowUp, name: str = "Acme") -> str:
    """A new organization's API key, made with `meterflow create-organization`."""
    done = await up.cli("create-organization", "--name", name)
    assert done.returncode == 0, done.stderr
    return next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if "api key" in line)


async def wait_for_usage(api: LagoHttp, customer: str, subscription: str) -> None:
    """Until the aggregator knows the subscription (its catalog record arrived)."""
    deadline = time.monotonic() + 60
    while await api.usage(customer, subscription) is None:
        assert time.monotonic() < deadline, "the aggregator never saw the subscription"
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def stack_with_catalog(
    settings: Settings, tmp_path: Path, subscriptions: list[str], **overrides: str
) -> AsyncIterator[tuple[MeterflowUp, LagoHttp]]:
    """A running `meterflow up` (settings `overrides`) whose customer `acme` holds each of
    `subscriptions` on plan `basic`, known to the aggregator; stopped afterwards, and a
    clean exit asserted."""
    up = MeterflowUp.for_test(settings, tmp_path, **overrides)
    await up.start()
    api = None
    try:
        api = LagoHttp(up.api_url, await create_key(up))
        await api.simple_catalog("acme", subscriptions)
        await wait_for_usage(api, "acme", subscriptions[-1])
        yield up, api
    finally:
        if api is not None:
            await api.close()
        code = up.stop()
    assert code == 0, up.log()[-3000:]
    assert "meterflow: stopped" in up.log()


async def produce_raw(settings: Settings, topic: str, value: bytes, key: bytes) -> None:
    """One record written straight to Kafka, as a foreign producer (or a bug) would."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
