"""Shared fixtures and markers.

* ``gpu``: needs a CUDA device; skipped with a visible reason otherwise.
* ``slow``: long sweeps; run with ``--runslow``.
* Triton kernels run on CPU tensors under ``TRITON_INTERPRET=1``, which must be
  set before the kernel modules are imported: this file sets it when no CUDA
  device is visible.
* Compiled code (torch.compile / Inductor) is cached in a fresh folder per test
  session, ``TORCHINDUCTOR_CACHE_DIR`` (fixture ``inductor_cache_dir``),
  inherited by subprocesses and removed at the end: a run never reuses code an
  earlier run compiled, perhaps under another ``ATEN_CPU_CAPABILITY`` or torch.
* ``compile`` marks the tests that run torch.compile; a run that deselects them (``-m "not compile"``,
  as ``.ci/portable`` does) makes ``torch.compile`` raise, so a test that compiles without the mark fails
  there instead of quietly costing the leg its time.
* ``threads``: each test that takes it runs with torch's intra-op thread count at 1 and at 2 (the kernels'
  single-task and split plans), restored afterwards.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# before anything compiles: Inductor reads the variable whenever it looks for its cache
INDUCTOR_CACHE_DIR = tempfile.mkdtemp(prefix="srops-tests-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = INDUCTOR_CACHE_DIR

import srops  # noqa: E402  (after TRITON_INTERPRET)
from srops import _ext  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    if "not compile" in (config.option.markexpr or ""):
        def refuse(*args, **kwargs):
            raise RuntimeError("this test calls torch.compile but is not marked `compile` (pytest.mark.compile), "
                               "and this run deselects the compile tests")

        torch.compile = refuse


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        f"srops {srops.__version__}: torch {torch.__version__}, extension "
        f"{'loaded' if _ext.HAS_EXT else 'missing: ' + str(_ext.EXT_ERROR)}, CUDA kernels {_ext.HAS_CUDA_EXT}, "
        f"CUDA device {torch.cuda.is_available()}, TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')}"
    ]
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA device; none is visible (run `make gpu-check` on a GPU machine)")
    no_slow = pytest.mark.skip(reason="slow sweep; run with --runslow")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(no_slow)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}thread")
def threads(request: pytest.FixtureRequest):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def inductor_cache_dir() -> str:
    """This session's own Inductor cache folder (``TORCHINDUCTOR_CACHE_DIR``)."""
    return INDUCTOR_CACHE_DIR


@pytest.fixture
def make_read_only(monkeypatch: pytest.MonkeyPatch):
    """``make_read_only(folder)``: creating anything directly under ``folder`` fails with EROFS, as on a
    read-only file system (``os.open`` with ``O_CREAT`` is refused; reads still work)."""
    import errno
    from pathlib import Path

    def apply(folder) -> None:
        real_open = os.open

        def read_only(path, flags, *a, **k):
            if Path(os.fspath(path)).parent == Path(folder) and flags & os.O_CREAT:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", read_only)

    return apply


requires_ext = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")


def _build_outputs() -> dict[str, tuple[int, int]]:
    """The imported package's build record and in-place binaries: name -> (size, mtime)."""
    pkg = os.path.dirname(srops.__file__)
    names = [n for n in os.listdir(pkg) if n == "_build_info.py" or n.startswith("_C.")]
    return {n: (st.st_size, st.st_mtime_ns) for n in sorted(names) for st in [os.stat(os.path.join(pkg, n))]}


_BUILD_AT_START = _build_outputs()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test rebuilt or removed the package it imports (tests build copies, never it);
    remove this session's Inductor cache."""
    shutil.rmtree(INDUCTOR_CACHE_DIR, ignore_errors=True)
    if _build_outputs() != _BUILD_AT_START:
        session.config.get_terminal_writer().line(
            "error: a test changed srops's own build outputs (_build_info.py or _C*.so) in "
            f"{os.path.dirname(srops.__file__)}; later processes would import another build", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
