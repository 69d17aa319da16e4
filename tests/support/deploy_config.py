"""The repo's Prometheus rules and Grafana dashboard as tests read them: their expressions
and the metric names those expressions use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# PromQL words that are not metric names.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords,
    label names (inside braces or grouping clauses) or durations."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        found.add(word)
    return found


def rule_expressions() -> list[str]:
    rules: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "meterflow.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def used_names() -> set[str]:
    return {n for e in rule_expressions() + dashboard_expressions() for n in metric_names(e)}
