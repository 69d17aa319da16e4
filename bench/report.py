"""What every benchmark reports the same way: the machine it ran on, percentiles and medians,
a plain-text table, and a JSON file in bench/results/ (git-ignored)."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from meterflow.db import connect
from meterflow.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def timestamp() -> str:
    """UTC now, compact and safe in a file name: 20261124T164512Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else math.nan


def p50(values: Iterable[float]) -> float:
    return percentile(values, 50)


def p99(values: Iterable[float]) -> float:
    return percentile(values, 99)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is zero."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def git_commit() -> str | None:
    """The commit the benchmarked code is at, with '+dirty' when the tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def kafka_version(settings: Settings) -> str | None:
    """The embedded broker's version, read from its jar; None for an external broker."""
    if settings.kafka_bootstrap is not None:
        return None
    for jar in sorted((settings.state_dir / "kafka" / "libs").glob("kafka_2.*-*.jar")):
        found = re.fullmatch(r"kafka_[\d.]+-(.+)\.jar", jar.name)
        if found:
            return found.group(1)
    return None


async def postgres_version(settings: Settings) -> str | None:
    try:
        conn = await connect(settings.dsn)
    except OSError:
        return None
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


async def machine_facts(settings: Settings) -> dict[str, Any]:
    """Where the numbers came from. The load average says how busy the machine already was:
    on a shared machine, compare rows of one run, not runs of different days."""
    memory = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(memory.total / 2**30, 1),
        "memory_available_gb": round(memory.available / 2**30, 1),
        "load_average_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "kafka": kafka_version(settings) or settings.bootstrap_servers,
        "postgres": await postgres_version(settings),
        "git_commit": git_commit(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too), numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    numeric = [
        bool(cells) and all(_looks_numeric(row[i]) for row in cells) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if right else "-" * (w + 2)
            for w, right in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(list(headers)), rule, *(line(row) for row in cells)])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(format_table(headers, rows), flush=True)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("-", "").replace(".", "")
    return stripped.isdigit() or text == "-"


def write_json(name: str, result: dict[str, Any]) -> Path:
    """bench/results/<name>-<timestamp>.json; NaN is written as null."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{timestamp()}.json"
    path.write_text(json.dumps(_jsonable(result), indent=2, default=str) + "\n")
    return path


def write_record(
    name: str, machine: dict[str, Any], fields: dict[str, Any], *, module: str | None = None
) -> Path:
    """Write a benchmark's JSON record (`write_json`): its name, the command that ran it (as
    `python -m bench.<module>`, the module defaulting to the name), when, the machine's facts
    and its load at the end, then `fields`; say where it went."""
    command = [Path(sys.executable).name, "-m", f"bench.{module or name}", *sys.argv[1:]]
    path = write_json(
        name,
        {
            "benchmark": name,
            "command": " ".join(command),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "load_average_at_end": load_average(),
            **fields,
        },
    )
    print(f"\nwritten to {path}")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
