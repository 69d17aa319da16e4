"""The same objects through Lago's JavaScript client (lago-javascript-client from npm,
installed by the test into the state directory): add-ons, a one-off invoice, its PDF,
credit notes, voids, webhook endpoints, the JWT public key, events read back, a manual
payment, the gross revenue report, a customer's subscriptions, a plan's charges one at a
time and its metadata."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from meterflow.settings import Settings

SDK_VERSION = "1.53.0"
SCENARIO = Path(__file__).parent / "js" / "scenario.mjs"


def _install(folder: Path) -> None:
    """`npm install` the client once into `folder` (reused by later runs)."""
    installed = folder / "node_modules" / "lago-javascript-client" / "package.json"
    if installed.is_file() and f'"v{SDK_VERSION}"' in installed.read_text():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: the JavaScript client cannot be tried")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            f"lago-javascript-client@{SDK_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"npm install lago-javascript-client failed:\n{result.stderr[-2000:]}")


async def test_objects_through_the_javascript_client(
    tenant: Any, server: Any, settings: Settings
) -> None:
    folder = settings.state_dir / "lago-javascript-client"
    await asyncio.to_thread(_install, folder)
    env = {
        **os.environ,
        "LAGO_JS_SDK": str(folder),
        "LAGO_API_URL": server.url,
        "LAGO_API_KEY": tenant.api_key,
    }
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    proc = await asyncio.create_subprocess_exec(
        node, str(SCENARIO), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    out = orjson.loads(stdout.strip().splitlines()[-1])
    assert out["add_on"] == {"code": "setup", "taxes": ["vat"]}
    assert out["updated_add_on"] == 3000 and out["add_ons"] == ["setup", "training"]
    # 1.5 x 100.00 (+20 % VAT) and 2 x 40.00: fees 230.00, taxes 30.00, total 260.00 EUR.
    assert out["invoice"] == {
        "type": "one_off",
        "fees": 23000,
        "taxes": 3000,
        "total": 26000,
        "fee_amounts": [15000, 8000],
    }
    assert out["customer_invoices"] == [True]
    assert out["file_url"].endswith(".pdf")
    assert out["estimate"] == {"taxes": 1000, "max": 6000}
    assert out["credit_note"] == {"status": "available", "balance": 6000}
    assert out["customer_credit_notes"] == 1
    assert (out["voided_credit_note"], out["voided_invoice"]) == ("voided", "voided")
    assert out["void_again"]["code"] == "not_voidable"
    assert (out["endpoint"], out["endpoints"]) == ("jwt", 1)
    assert out["public_key"] == "-----BEGIN PUBLIC KEY-----"
    assert out["event"] == "js-sub" and out["events"] == ["js-tx"]
    # 2 x 30.00, paid by one manual payment; the voided invoice is no revenue.
    assert out["payment"]["amount"] == 6000 and len(out["payment"]["invoices"]) == 1
    assert (out["paid"], out["customer_payments"]) == ("succeeded", 1)
    assert out["gross"] == [6000, 1]
    assert out["customer_subscriptions"] == 0
    assert out["charge"] == {"code": "calls", "metric": "calls", "amount": "0.5"}
    assert (out["charge_updated"], out["plan_charges"], out["charge_found"]) == (
        "0.75",
        ["calls"],
        True,
    )
    assert out["charge_twice"]["error_details"] == {"charge.code": ["value_already_exist"]}
    assert out["charge_deleted"] == "calls"
    assert out["charge_gone"]["code"] == "charge_not_found"
    assert out["plan_metadata"] == {"tier": "gold"}
