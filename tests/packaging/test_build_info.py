"""The torch the extension is built against: chosen by the build backend, recorded, checked at import."""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import types
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from srops import _ext
from tests.packaging._tree import PYTHON, ROOT, clean_copy, run


def _backend() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("srops_build", ROOT / "buildsys" / "srops_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mismatch_detected_only_for_another_torch() -> None:
    built = types.SimpleNamespace(TORCH_VERSION="2.11.0+cu130")
    why = _ext.torch_mismatch(built, "2.14.1+cu130")
    assert why is not None and "2.11.0+cu130" in why and "2.14.1+cu130" in why and "pip install" in why
    assert _ext.torch_mismatch(types.SimpleNamespace(TORCH_VERSION="2.14.1+cu130"), "2.14.1+cu130") is None
    assert _ext.torch_mismatch(types.SimpleNamespace(TORCH_VERSION="2.14.1"), "2.14.1+cu130") is not None
    assert _ext.torch_mismatch(None, "2.14.1") is None  # no record: loading is tried
    assert _ext.torch_mismatch(types.SimpleNamespace(TORCH_VERSION=None), "2.14.1") is None


def test_extension_of_another_torch_is_not_loaded_and_reference_works(tmp_path: Path) -> None:
    """A copy of the package whose build record names another torch: a warning that says how to rebuild,
    no extension, the reference backends still run."""
    pkg = tmp_path / "site" / "srops"
    shutil.copytree(Path(_ext.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_build_info.py").write_text("WITH_EXT = True\nTORCH_VERSION = '0.0.1+other'\nWITH_CUDA = False\n")
    code = (
        "import warnings, torch\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import srops, srops.functional as F\n"
        "from srops import _ext\n"
        "assert not _ext.HAS_EXT and 'srops._C' not in __import__('sys').modules\n"
        "print('WARN', [str(w.message) for w in caught if w.category is RuntimeWarning])\n"
        "print('REASON', _ext.EXT_ERROR)\n"
        "x = torch.randn(2, 4, 3, 5)\n"
        "print('SHAPE', tuple(F.covpool(x).shape), srops.backends()['covpool']['cpu']['cpu'])\n"
    )
    out = run([PYTHON, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")}).stdout
    assert re.search(r"WARN .*0\.0\.1\+other.*rebuild", out), out
    assert "REASON srops._C was built against torch 0.0.1+other" in out, out
    assert "SHAPE (2, 4, 4)" in out and "0.0.1+other" in out.split("SHAPE", 1)[1], out


def test_backend_asks_for_the_installed_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend()
    assert backend.installed_torch() == version("torch")
    monkeypatch.delenv("SROPS_BUILD_TORCH", raising=False)
    monkeypatch.delenv("SROPS_NO_EXT", raising=False)
    assert backend.build_torch() == version("torch")
    monkeypatch.setenv("SROPS_BUILD_TORCH", "2.13.0+cpu")
    assert backend.build_torch() == "2.13.0+cpu"
    monkeypatch.setenv("SROPS_NO_EXT", "1")
    assert backend.build_torch() is None


def test_backend_default_is_the_pinned_torch(tmp_path: Path) -> None:
    """Where nothing is installed (an empty venv) the build asks for requirements.txt's torch."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    backend = _backend()
    assert backend.DEFAULT_TORCH == pins["torch"]
    empty = tmp_path / "venv"
    import venv

    venv.EnvBuilder(with_pip=False).create(empty)
    assert backend.installed_torch(str(empty / "bin" / "python")) is None


def test_no_ext_rebuild_replaces_stale_build_record(tmp_path: Path) -> None:
    """A pure-Python build after an extension build: the tree's and the wheel's _build_info.py say so,
    and the earlier in-place binary is gone."""
    src = clean_copy(tmp_path / "src")
    (src / "srops" / "_build_info.py").write_text("WITH_EXT = True\nTORCH_VERSION = '2.14.1'\nWITH_CUDA = True\n")
    stale_so = src / "srops" / "_C.cpython-311-x86_64-linux-gnu.so"
    stale_so.write_bytes(b"not a binary")
    run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", src],
        cwd=tmp_path, env={"SROPS_NO_EXT": "1"})
    record = (src / "srops" / "_build_info.py").read_text()
    assert "WITH_EXT = False" in record and "WITH_CUDA = False" in record and "TORCH_VERSION = None" in record
    assert not stale_so.exists()
    (wheel,) = (tmp_path / "dist").glob("srops-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("srops/_build_info.py").decode() == record
        assert not any(n.endswith(".so") for n in whl.namelist())
        metadata = next(whl.read(n).decode() for n in whl.namelist() if n.endswith("METADATA"))
    assert "Requires-Dist: torch>=2.11" in metadata


def test_runtime_torch_is_the_build_torch() -> None:
    """The running build (make test's editable one) was compiled against this very torch."""
    if not _ext.HAS_EXT:
        pytest.skip(f"no extension: {_ext.EXT_ERROR}")
    from srops import _build_info

    assert _build_info.TORCH_VERSION == torch.__version__
    assert sys.modules.get("srops._C") is not None


def test_extension_carries_no_debug_information() -> None:
    """The C++ objects are compiled with -g0 (Python's own CFLAGS say -g): 40 % less compile time in
    ``make demo``'s and ``pip install``'s build, and a smaller binary."""
    import subprocess

    spec = importlib.util.find_spec("srops._C")
    if spec is None or spec.origin is None:
        pytest.skip("srops._C is not built in this environment")
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    out = subprocess.run(["readelf", "-S", "-W", spec.origin], capture_output=True, text=True, check=True).stdout
    sections = re.findall(r"\]\s+(\.\S+)", out)
    assert ".text" in sections
    assert not [s for s in sections if s.startswith(".debug_info")], spec.origin
