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


def test_moved_bench_modules_import_with_a_deprecation_warning() -> None:
    """``import bench.<name>`` still works and warns. In a subprocess: importing tools.sass_report changes
    the environment (it drops TRITON_INTERPRET to compile real kernels), which must not leak into this run."""
    names = ["cpu_peaks", "nonlocal_cpu_interleaved", "sass_cuda", "sass_report"]
    code = ("import importlib, warnings\n"
            f"for name in {names!r}:\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        importlib.import_module('bench.' + name)\n"
            "    print(name, any(issubclass(w.category, DeprecationWarning) and 'tools.' + name in str(w.message)\n"
            "                    for w in caught))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [x for name in names for x in (name, "True")]
