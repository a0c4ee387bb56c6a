"""Shims for the scripts that moved from bench/ to tools/ (kept for one release; pytest collects only
``bench_*.py`` here, so none of them is a benchmark)."""
from __future__ import annotations

import runpy
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_moved(name: str, also: str = "") -> None:
    """Print a deprecation note naming ``tools/<name>.py`` (and ``also``, another way to run it) on one line,
    then run it as ``__main__`` with this process's arguments (``python bench/<name>.py ...`` and
    ``python -m bench.<name> ...`` both land here); its exit status is the process's."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    print(f"DeprecationWarning: bench/{name}.py has moved to tools/{name}.py and this shim will be removed in the "
          f"next release; run python -m tools.{name} (same arguments){also}", file=sys.stderr, flush=True)
    runpy.run_module(f"tools.{name}", run_name="__main__", alter_sys=True)


def warn_import(name: str) -> None:
    warnings.warn(f"bench.{name} has moved to tools.{name}; this alias goes in the next release",
                  DeprecationWarning, stacklevel=3)
