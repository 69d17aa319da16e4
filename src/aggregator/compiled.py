"""The aggregator's hot path compiled with mypyc, and the guard that never runs it stale.

`python -m aggregator.compiled` (run by `make` after the install) compiles `HOT_PATH`, the
modules every event goes through, into C extensions beside their sources (`src/aggregator/
*.so`, with mypyc's shared runtime `aggregator_hot__mypyc*.so` in `src/`) and writes
`DIGESTS`, the SHA-256 of each source it compiled. The same sources run interpreted
wherever nothing was compiled.

Python prefers an extension to a source of the same module, so an edited source would be
shadowed by an extension built from the old one. `install` (run by the package's
`__init__`, before any of them is imported) compares the digests with the sources: when
any differs, or no digest was written, or `METERFLOW_AGGREGATOR_INTERPRETED` is set, it
puts a finder first on `sys.meta_path` that loads all of `HOT_PATH` from source (all or
none: compiled modules call each other's compiled code directly) and logs why.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
HOT_PATH = ("sharded", "marker_index", "markers", "fold", "processing")
DIGESTS = PACKAGE / "compiled-sources.json"
INTERPRETED_ENV = "METERFLOW_AGGREGATOR_INTERPRETED"
GROUP = "aggregator_hot"


def _digests() -> dict[str, str]:
    return {
        name: hashlib.sha256((PACKAGE / f"{name}.py").read_bytes()).hexdigest() for name in HOT_PATH
    }


def _extensions() -> list[Path]:
    return [
        path
        for name in HOT_PATH
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (path := PACKAGE / f"{name}{suffix}").exists()
    ]


class _FromSource(importlib.machinery.PathFinder):
    """Finds the hot-path modules' sources, never their extensions."""

    @classmethod
    def find_spec(
        cls,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in HOT_PATH:
            return None
        return importlib.util.spec_from_file_location(fullname, PACKAGE / f"{name}.py")


def why_interpreted() -> str | None:
    """None when the compiled hot path is loaded as built, else why the sources are."""
    if os.environ.get(INTERPRETED_ENV):
        return f"{INTERPRETED_ENV} is set"
    if not _extensions():
        return "not compiled (python -m aggregator.compiled builds it)"
    try:
        built = json.loads(DIGESTS.read_text())
    except (OSError, ValueError):
        return f"no readable {DIGESTS.name}: rebuild with python -m aggregator.compiled"
    stale = sorted(name for name, digest in _digests().items() if built.get(name) != digest)
    if stale:
        return f"sources changed since compiled ({', '.join(stale)}): run make"
    if importlib.util.find_spec(f"{GROUP}__mypyc") is None:  # beside the package, in src/
        return f"{GROUP}__mypyc, the compiled modules' runtime, is not importable"
    return None


def install() -> None:
    """Load the hot path from source unless its extensions match the sources (module doc)."""
    reason = why_interpreted()
    if reason is None or any(isinstance(f, type) and f is _FromSource for f in sys.meta_path):
        return
    if _extensions():
        log.warning("aggregator.compiled_unused reason=%r", reason)
    sys.meta_path.insert(0, _FromSource)


def is_compiled() -> bool:
    """Whether the hot path running in this process is the compiled one."""
    processing = sys.modules.get(f"{__package__}.processing")
    origin = getattr(processing, "__file__", "") or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def build(quiet: bool = False) -> None:
    """Compile `HOT_PATH` in place and record the digests of the sources compiled."""
    from mypyc.build import mypycify
    from setuptools import setup

    src = PACKAGE.parent
    work = src.parent / "build" / "mypyc"  # generated C and objects (git-ignored)
    digests = _digests()  # read before compiling: an edit meanwhile makes them stale
    os.chdir(src)
    modules = [f"{__package__}/{name}.py" for name in HOT_PATH]
    setup(
        name="meterflow-aggregator-hot-path",
        ext_modules=mypycify(modules, opt_level="3", group_name=GROUP, target_dir=str(work)),
        script_args=[
            "build_ext",
            "--inplace",
            "--build-temp",
            str(work / "temp"),
            "--build-lib",
            str(work / "lib"),
        ],
    )
    DIGESTS.write_text(json.dumps(digests, indent=1) + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build(quiet="--quiet" in sys.argv[1:])
