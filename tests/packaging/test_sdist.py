"""The sdist carries every file a build needs: compared with the checkout's own files (``git ls-files``)."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.packaging._tree import BUILD_INPUTS, PYTHON, clean_copy, run, tracked_files


@pytest.mark.slow
def test_sdist_contains_every_build_input(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="needs the `build` package (requirements.txt)")
    src = clean_copy(tmp_path / "src")
    run([PYTHON, "-m", "build", "--sdist", "--outdir", tmp_path / "dist", src], cwd=tmp_path)
    sdists = sorted((tmp_path / "dist").glob("srops-*.tar.gz"))
    assert len(sdists) == 1, sdists
    with tarfile.open(sdists[0]) as tar:
        shipped = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = [f for f in tracked_files() if f.startswith(BUILD_INPUTS)]
    assert any(f.endswith(".h") for f in needed) and "setup.py" in needed  # the comparison is not empty
    missing = [f for f in needed if f not in shipped]
    assert not missing, f"the sdist lacks {missing}"
    assert "srops/_build_info.py" not in shipped and not any(n.endswith(".so") for n in shipped)
