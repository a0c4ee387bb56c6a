"""The wheel as a user gets it: ``python -m build`` (isolated: sdist, then the wheel built from that sdist)
from a clean copy of the checkout, installed into a fresh venv, imported from outside the checkout.

Slow (an isolated build installs torch into its build environment and compiles
the C++ kernels; ``SROPS_NO_CUDA=1`` leaves the CUDA kernels out to halve the
time): ``.ci/run`` runs it with ``--runslow``.
"""
from __future__ import annotations

import re
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.packaging._tree import PYTHON, ROOT, clean_copy, fresh_venv, run, share_site_packages

CHECK = """
import srops, srops._C, torch
from srops import _ext, _build_info
import srops.functional as F
assert _ext.HAS_EXT, _ext.EXT_ERROR
assert _build_info.WITH_EXT and _build_info.TORCH_VERSION == torch.__version__
assert "cpu" in srops.backends()["covpool"], srops.backends()["covpool"]
x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
got = F.covpool(x, backend="cpu")
want = F.covpool(x, backend="reference")
torch.testing.assert_close(got, want)
import srops.models
from srops.models import config
from srops.models.data import list_images
# the presets' relative data folders resolve to the images the wheel installs, from any working folder
assert len(list_images(config.resolve_folder("data/T91"))) == 91
assert len(list_images(config.resolve_folder("data/Set5"))) == 5
print("srops from", srops.__file__)
"""


@pytest.mark.slow
def test_isolated_wheel_installs_and_loads_outside_checkout(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="needs the `build` package (requirements.txt)")
    pinned = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    if version("torch") != pinned:
        pytest.skip(f"the wheel is built against torch {pinned} (requirements.txt); this run has {version('torch')}")
    src = clean_copy(tmp_path / "src")
    # build's isolated environment starts empty: the backend asks for requirements.txt's torch
    run([PYTHON, "-m", "build", "--outdir", tmp_path / "dist", src], cwd=tmp_path, env={"SROPS_NO_CUDA": "1"})
    wheels = sorted((tmp_path / "dist").glob("srops-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        metadata = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert any(n.startswith("srops/_C.") and n.endswith(".so") for n in names), names
    assert "srops/_build_info.py" in names and "srops/models/__init__.py" in names
    assert f"Requires-Dist: torch=={version('torch')}" in metadata.splitlines(), metadata
    assert "srops-upscale = srops.models.upscale:main" in entry_points

    target = fresh_venv(tmp_path / "user-venv")
    run([target, "-m", "pip", "install", "--no-deps", wheels[0]], cwd=tmp_path)
    share_site_packages(target, "torch", "numpy", "PIL", "yaml", "tqdm")  # the same torch 2.x the build used
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = run([target, "-c", CHECK], cwd=outside).stdout
    assert str(tmp_path / "user-venv") in out, out
