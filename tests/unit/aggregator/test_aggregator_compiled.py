"""The compiled hot path (`aggregator.compiled`): used only when built from the very sources
present, the sources otherwise; CI runs the compiled one (`make` builds it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator import compiled

_PROBE = (
    "import aggregator.compiled as c, aggregator.fold as f, aggregator.processing as p;"
    "print(p.__file__, f.__file__, c.is_compiled())"
)


def _probe(**env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_the_hot_path_runs_from_source_when_told() -> None:
    processing, fold, is_compiled = _probe(**{compiled.INTERPRETED_ENV: "1"})
    assert processing.endswith("processing.py") and fold.endswith("fold.py")
    assert is_compiled == "False"


def test_extensions_built_from_other_sources_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = tmp_path / "compiled-sources.json"
    built = {name: "0" * 64 for name in compiled.HOT_PATH}
    digests.write_text(json.dumps(built))
    monkeypatch.delenv(compiled.INTERPRETED_ENV, raising=False)
    monkeypatch.setattr(compiled, "DIGESTS", digests)
    monkeypatch.setattr(compiled, "_extensions", lambda: [tmp_path / "processing.so"])
    reason = compiled.why_interpreted()
    assert reason is not None and "sources changed" in reason and "processing" in reason
    monkeypatch.setattr(compiled, "DIGESTS", tmp_path / "missing.json")
    assert "no readable" in (compiled.why_interpreted() or "")


def test_the_compiled_hot_path_is_used_when_built_from_these_sources() -> None:
    reason = compiled.why_interpreted()
    assert (_probe()[2] == "True") == (reason is None), reason
    if os.environ.get("CI"):  # `make test` builds it first
        assert reason is None, reason
