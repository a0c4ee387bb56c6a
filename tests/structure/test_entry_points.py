"""Renamed entry points keep working for one release, with a deprecation note."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_srops_demo_runs_compare_backends_with_a_deprecation_note() -> None:
    new = subprocess.run([sys.executable, "-m", "srops.compare_backends", "--help"], capture_output=True, text=True,
                         timeout=300)
    old = subprocess.run([sys.executable, "-m", "srops.demo", "--help"], capture_output=True, text=True, timeout=300)
    assert new.returncode == 0 and old.returncode == 0, (new.stderr, old.stderr)
    assert "usage: python -m srops.compare_backends" in new.stdout
    assert old.stdout == new.stdout
    assert "DeprecationWarning" in old.stderr and "srops.compare_backends" in old.stderr
    assert "DeprecationWarning" not in new.stderr


@pytest.mark.parametrize("name", ["cpu_peaks", "sass_report"])
def test_moved_bench_scripts_still_run_with_a_note(name: str) -> None:
    """bench/<name>.py moved to tools/: the old path still runs it (same output) for one release."""
    new = subprocess.run([sys.executable, "-m", f"tools.{name}", "--help"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    old = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--help"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT.parent)
    assert new.returncode == 0 and old.returncode == 0, (new.stderr, old.stderr)
    assert old.stdout == new.stdout and "usage:" in new.stdout
    assert f"moved to tools/{name}.py" in old.stderr


@pytest.mark.parametrize("name", ["cpu_peaks", "nonlocal_cpu_interleaved", "sass_cuda", "sass_report"])
def test_moved_bench_modules_import_with_a_deprecation_warning(name: str) -> None:
    import importlib

    sys.modules.pop(f"bench.{name}", None)
    with pytest.warns(DeprecationWarning, match=f"tools.{name}"):
        importlib.import_module(f"bench.{name}")
