"""A real Prometheus, run with the repo's scrape config and alert rules against a running
`meterflow up`, finds every target up, every series the rules and the dashboard read, and
evaluates every rule without error."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from meterflow.settings import Settings
from support.deploy_config import DEPLOY, used_names
from support.meterflow_up import LagoHttp, MeterflowUp, produce_raw, stack_with_catalog
from support.services import free_port

JOB_PORTS = {
    "meterflow-ingest": "api_metrics",
    "meterflow-aggregator": "agg_metrics",
    "meterflow-invoicer": "inv",
    "meterflow-webhooks": "webhooks",
    "meterflow-exporter": "exporter",
}


def local_config(up: MeterflowUp, tmp_path: Path) -> Path:
    """The repo's prometheus.yml with each job's target on this test's port, scraping every
    second; the rule files are the repo's own."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(JOB_PORTS), "a scrape job per service"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [f"127.0.0.1:{up.ports[JOB_PORTS[name]]}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def rule_names() -> list[str]:
    """The alert rules of `deploy/prometheus/alerts.yml`: each must be loaded and evaluate."""
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


async def until(probe: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await asyncio.to_thread(probe)
        except urllib.error.URLError as exc:  # Prometheus still starting
            found = exc
        if found is True:
            return
        assert time.monotonic() < deadline, f"{what}: {found}"
        await asyncio.sleep(1)


async def drive(lago: LagoHttp, settings: Settings) -> None:
    """Usage, a rejected event, a terminated subscription (an invoice), and one poison record
    in each of the events and periods-closed topics (a dead letter of each service)."""
    now = int(time.time())
    events = [
        {
            "transaction_id": f"t{i}",
            "external_subscription_id": "sub-1",
            "code": "calls",
            "timestamp": now,
        }
        for i in range(50)
    ]
    await lago.ok("POST", "/api/v1/events/batch", {"events": events})
    status, _ = await lago.call("POST", "/api/v1/events", {"event": {"code": "calls"}})
    assert status == 422, "an event without transaction_id is rejected"
    await lago.ok("DELETE", "/api/v1/subscriptions/sub-1")
    await produce_raw(settings, settings.topics.events, b"{not json", b"sub-1")
    await produce_raw(settings, settings.topics.periods_closed, b"{not json", b"sub-1")


async def test_prometheus_scrapes_every_service_and_finds_every_series_used(
    settings: Settings, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is missing: apt-get install prometheus (.ci/run does)"
    async with stack_with_catalog(
        settings,
        tmp_path,
        ["sub-1"],
        METERFLOW_AGGREGATOR_CLOSE_GRACE="0",
        METERFLOW_AGGREGATOR_CLOSE_INTERVAL="0.5",
    ) as (up, lago):
        await scrape_and_check(up, lago, settings, prometheus, tmp_path)


async def scrape_and_check(
    up: MeterflowUp, lago: LagoHttp, settings: Settings, prometheus: str, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={local_config(up, tmp_path)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await drive(lago, settings)

        def targets_up() -> Any:
            active = api(port, "targets")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            return True if health == dict.fromkeys(JOB_PORTS, "up") else health

        await until(targets_up, "targets not all up")

        def series_present() -> Any:
            present = set(api(port, "label/__name__/values"))
            missing = used_names() - present
            return True if not missing else sorted(missing)

        await until(series_present, "series the rules or the dashboard use are missing")

        def rules_evaluated() -> Any:
            groups = api(port, "rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
            return True if len(rules) == len(rule_names()) and not bad else (len(rules), bad)

        await until(rules_evaluated, "rules not evaluated cleanly")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
