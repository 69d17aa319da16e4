"""docker-compose.yml declares the stack the README promises, on the documented ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_declares_kafka_postgres_and_meterflow_services() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["postgres"]["image"].startswith("postgres:")
    assert "9092:9092" in services["kafka"]["ports"]
    assert "5432:5432" in services["postgres"]["ports"]
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft, no ZooKeeper"


def test_meterflow_services_use_the_project_image_and_reach_the_stack() -> None:
    services = _compose()["services"]
    own = {name: s for name, s in services.items() if "build" in s}
    assert set(own) == {"migrate", "ingest", "aggregator", "invoicer", "webhooks", "exporter"}
    assert {name: s["command"] for name, s in own.items()} == {n: [n] for n in own}
    assert "3000:3000" in services["ingest"]["ports"], "Lago's API port"
    for name, service in own.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert set(service["depends_on"]) >= {"kafka", "postgres"}, name


def test_long_running_services_restart_and_have_health_checks() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if name == "migrate":
            assert "restart" not in service, "migrate runs once"
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_prometheus_and_grafana_use_the_repo_config() -> None:
    services = _compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    for mount in (*services["prometheus"]["volumes"], *grafana):
        assert (ROOT / mount.split(":")[0]).exists(), mount
