"""Compiled code goes to this test session's own Inductor cache, never to a shared one.

A cache written under one ``ATEN_CPU_CAPABILITY`` (or torch build) and reused under another can load code
for the wrong ISA; tests/conftest.py therefore points ``TORCHINDUCTOR_CACHE_DIR`` at a fresh folder per
session, inherited by subprocesses.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.compile


def _inside(path: str | os.PathLike, folder: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), os.path.realpath(folder)]) == os.path.realpath(folder)


def test_cache_dir_is_fresh_and_per_session(inductor_cache_dir: str) -> None:
    """The variable names this session's folder, a new one under the temporary directory (not the
    default shared ``<tmp>/torchinductor_<user>``), and Inductor resolves its cache there."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == inductor_cache_dir
    assert Path(inductor_cache_dir).is_dir()
    assert _inside(inductor_cache_dir, tempfile.gettempdir())
    assert Path(inductor_cache_dir).name.startswith("srops-tests-inductor-")
    assert _inside(cache_dir(), inductor_cache_dir)


def test_compiling_writes_only_into_the_session_cache(inductor_cache_dir: str) -> None:
    """torch.compile with Inductor writes its generated code under the session folder."""
    before = {p for p in Path(inductor_cache_dir).rglob("*") if p.is_file()}

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 3.0 + x.cos()

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="inductor", fullgraph=True)
    x = torch.randn(37)
    torch.testing.assert_close(compiled(x), f(x))
    new = {p for p in Path(inductor_cache_dir).rglob("*") if p.is_file()} - before
    assert any(p.suffix == ".py" for p in new), sorted(map(str, new))[:20]


def test_subprocesses_inherit_the_session_cache(inductor_cache_dir: str, tmp_path: Path) -> None:
    """A subprocess started by a test (training runs, CLIs) sees the same cache folder (Inductor takes
    its cache from the variable, as the first test shows)."""
    code = "import os; print(os.environ['TORCHINDUCTOR_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=300).stdout.strip()
    assert _inside(out, inductor_cache_dir), out
