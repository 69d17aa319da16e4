"""The layout holds: no service package imports another (they meet in the shared packages,
topics or HTTP), the shared packages import no service, and no module outgrows 500 lines
(the code, the benchmarks, the tests and the scripts)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# Each runs as (or inside) a service of its own; one may not reach into another.
SERVICES = {"ingest", "aggregator", "invoicer", "resources", "console", "webhooks", "operations"}
# What services share: the pure domain, HTTP plumbing, the invoice read model, the Lago
# resources' rules and SQL (`store`, which the API's handlers and the console both call),
# invoicing (a closed period priced and written as an invoice: the invoicer's job, the
# preview's answer), settings, topics and database access.
SHARED = {"billing", "web", "read_model", "store", "meterflow", "invoicing"}
# Composition roots wire the parts together (the HTTP app; the CLI and its registry of the
# services it starts), so they may import every one of them.
ROOTS = {"gateway", "meterflow.cli", "meterflow.services"}
MAX_LINES = 500
# Known and not yet taken down, each with its reason; this list may only shrink.
PENDING: set[str] = set()


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imported(module: str, path: Path) -> set[str]:
    """Every module `module` imports, at its top or inside a function, absolute names."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
    return names


def _root(module: str) -> str | None:
    """The composition root a module belongs to, if any."""
    for root in ROOTS:
        if module == root or module.startswith(root + "."):
            return root
    return None


def _breaches() -> list[str]:
    local = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    breaches = []
    for module, path in _modules():
        if _root(module) is not None:
            continue
        own = module.split(".")[0]
        for name in sorted(_imported(module, path)):
            other = name.split(".")[0]
            if other == own or other not in local:
                continue  # itself, the standard library or a third-party package
            if other == "gateway" or (other in SERVICES and own in SERVICES | SHARED):
                breaches.append(f"{module} imports {name}")
    return breaches


def test_no_service_package_imports_another() -> None:
    assert sorted(set(_breaches()) - PENDING) == []


def test_the_walk_sees_every_package_and_their_imports() -> None:
    """Guards the test itself: it reads real modules and real imports."""
    modules = dict(_modules())
    assert {"ingest.events", "resources.customers", "store.customers", "web.payload"} <= set(
        modules
    )
    assert "gateway.app" in modules
    assert "web.errors" in _imported("ingest.events", modules["ingest.events"])
    assert "ingest.broker" in _imported("gateway.app", modules["gateway.app"])


def test_a_service_reaching_into_another_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from invoicer import repository\nfrom ..web import errors\n")
    names = _imported("resources.probe", source)
    assert names == {"invoicer", "web"}
    assert any(n.split(".")[0] in SERVICES for n in names)


def test_no_module_over_500_lines() -> None:
    longer = {}
    for folder in ("src", "bench", "tests", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                longer[str(path.relative_to(ROOT))] = lines
    assert longer == {}


def test_the_console_and_the_api_meet_in_store() -> None:
    """Issue 16: the console works through the resources' rules and SQL in `store`, never
    through the API's handlers."""
    modules = dict(_modules())
    console = [m for m in modules if m.split(".")[0] == "console"]
    reached = {n.split(".")[0] for m in console for n in _imported(m, modules[m])}
    assert "store" in reached
    assert "resources" not in reached
