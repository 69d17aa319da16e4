"""`meterflow up` says where the console is, on a line of its own starting with `console`."""

from __future__ import annotations

import pytest

from meterflow import cli
from meterflow.settings import Settings


def test_the_banner_has_a_console_line_with_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METERFLOW_INGEST_PORT", "3999")
    cli._print_endpoints(Settings.from_env({}))
    lines = capsys.readouterr().out.splitlines()
    console = [line for line in lines if line.startswith("console")]
    assert console and "http://127.0.0.1:3999/console/" in console[0]
