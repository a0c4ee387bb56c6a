"""Renamed entry points keep working for one release, with a deprecation note."""
from __future__ import annotations

import subprocess
import sys


def test_srops_demo_runs_compare_backends_with_a_deprecation_note() -> None:
    new = subprocess.run([sys.executable, "-m", "srops.compare_backends", "--help"], capture_output=True, text=True,
                         timeout=300)
    old = subprocess.run([sys.executable, "-m", "srops.demo", "--help"], capture_output=True, text=True, timeout=300)
    assert new.returncode == 0 and old.returncode == 0, (new.stderr, old.stderr)
    assert "usage: python -m srops.compare_backends" in new.stdout
    assert old.stdout == new.stdout
    assert "DeprecationWarning" in old.stderr and "srops.compare_backends" in old.stderr
    assert "DeprecationWarning" not in new.stderr
