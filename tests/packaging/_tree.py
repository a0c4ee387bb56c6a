"""Helpers of the packaging tests: the checkout's own files, a clean copy of them, fresh venvs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a build from the sdist reads: every tracked file under these, and these files.
BUILD_INPUTS = ("csrc/", "srops/", "buildsys/", "tests/", "setup.py", "pyproject.toml", "MANIFEST.in",
                "requirements.txt", "README.md", "data/Set5/")


def tracked_files() -> list[str]:
    """The checkout's files as git sees them (tracked, plus new ones not ignored) that exist; skip outside git."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (the packaging checks compare against `git ls-files`)")
    return sorted(f for f in out.splitlines() if (ROOT / f).is_file())


def clean_copy(dest: Path) -> Path:
    """``dest`` holding only the checkout's own files (no build outputs, no _build_info.py, no .so)."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def fresh_venv(path: Path) -> Path:
    """A new virtual environment with pip (nothing else); returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def share_site_packages(python: Path, *modules: str) -> None:
    """Let the venv of ``python`` import ``modules`` from where this interpreter has them (a .pth file):
    the installed torch is reused instead of installing several GB again."""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    dirs = []
    for name in modules:
        mod = __import__(name)
        d = str(Path(mod.__file__).resolve().parent.parent)
        if d not in dirs:
            dirs.append(d)
    (Path(out) / "zz_shared.pth").write_text("\n".join(dirs) + "\n")


def run(cmd: list, cwd: Path, env: dict | None = None, timeout: int = 3000) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure, fail the test with the tail of its output."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    full_env.update(env or {})
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc


PYTHON = Path(sys.executable)
