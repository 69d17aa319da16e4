"""Count the operations of Lago's OpenAPI spec that meterflow serves: every (method, path)
of the spec, less the families meterflow does not take on (payment providers, entitlements,
features, billing entities, quotes), matched against the API application's route table.

Usage: PYTHONPATH=src python scripts/lago_operations.py [--spec PATH] [--missing]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# shared/ lies beside the clone (CI, /work/main) or beside its worktrees' folder.
DEFAULT_SPEC = next(
    (
        p / "shared" / "reference" / "lago-openapi.yaml"
        for p in ROOT.parents
        if (p / "shared" / "reference" / "lago-openapi.yaml").is_file()
    ),
    ROOT.parent / "shared" / "reference" / "lago-openapi.yaml",
)
METHODS = ("get", "post", "put", "patch", "delete")
# Tags of the families left out of the count.
EXCLUDED_TAGS = {
    "payment_methods",
    "payment_requests",
    "payments",
    "payment_receipts",
    "entitlements",
    "features",
    "billing_entities",
    "quotes",
}
# Customer operations that only exist for payment providers.
EXCLUDED_PATHS = {"/customers/{}/portal_url", "/customers/{}/checkout_url"}


def _shape(path: str) -> str:
    """A path with every parameter written `{}`, so that names do not matter."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def spec_operations(spec: Path) -> list[tuple[str, str, str]]:
    """(METHOD, path shape, operationId) of every counted operation of the spec."""
    loaded: dict[str, Any] = yaml.safe_load(spec.read_text())
    out = []
    for path, item in loaded["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            if EXCLUDED_TAGS & set(op.get("tags", [])) or _shape(path) in EXCLUDED_PATHS:
                continue
            out.append((method.upper(), _shape(path), op.get("operationId", "")))
    return out


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, path shape below /api/v1) of every route of the API application."""
    from gateway.app import create_app
    from meterflow.settings import Settings
    from web.settings import IngestSettings

    app = create_app(Settings.from_env(), IngestSettings())
    routes = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        if not path.startswith("/api/v1/"):
            continue
        for route in resource:
            routes.add((route.method, _shape(path.removeprefix("/api/v1"))))
    return routes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--missing", action="store_true", help="list the operations not served")
    args = parser.parse_args()
    operations = spec_operations(args.spec)
    served = served_routes()
    missing = [op for op in operations if (op[0], op[1]) not in served]
    print(f"served {len(operations) - len(missing)} of {len(operations)} counted operations")
    if args.missing:
        for method, path, operation_id in missing:
            print(f"  missing {method:<6} {path}  ({operation_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
