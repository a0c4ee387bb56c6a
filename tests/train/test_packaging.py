"""15.5: building the package (what `make demo` prints first) gives no setuptools warnings: the license is
an SPDX string and the installed presets folder is a declared package."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging._tree import clean_copy


def test_build_has_no_setuptools_warnings(tmp_path: Path) -> None:
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} predates SPDX license strings (the build needs >= 77)")
    # A pure-Python build rewrites the tree's build record and removes its in-place binary: build a copy,
    # never the checkout the rest of the suite imports.
    root = clean_copy(tmp_path / "src")
    env = {**os.environ, "SROPS_NO_EXT": "1", "PYTHONWARNINGS": "default"}
    cmd = [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "build_py",
           "--build-lib", str(tmp_path / "lib")]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "lib" / "srops" / "models" / "configs").glob("*.yml")) == \
        sorted(p.name for p in (root / "srops" / "models" / "configs").glob("*.yml"))
