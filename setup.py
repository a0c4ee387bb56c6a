"""Build srops and its one extension, ``srops._C``.

* C++ CPU sources (``csrc/*.cpp``, ``csrc/*/*.cpp``) are always compiled.
* CUDA sources (``csrc/**/*.cu``) are compiled whenever nvcc and a CUDA build
  of torch are present, with or without a GPU. ``torch.cuda.is_available()`` is
  never consulted.
* ``SROPS_NO_EXT=1`` installs the pure-Python package (reference backends only).
* ``SROPS_NO_CUDA=1`` builds the C++ CPU kernels only (about half the build time).
* ``SROPS_FORCE_CUDA=1`` fails loudly if the CUDA sources cannot be built.
* C++ objects carry no debug information (``-g0``, overriding Python's ``-g``: 40 % less compile
  time, measured 34.5 s → 20.9 s for ``cbam_cpu.cpp``); ``SROPS_DEBUG_BUILD=1`` keeps ``-g``.
* ``TORCH_CUDA_ARCH_LIST`` is respected; when unset it defaults to
  ``8.0;9.0+PTX`` (A100, H100/H200, PTX for newer parts).

The torch of the build is the torch of the run: the wheel requires
``torch==<the version compiled against>`` (buildsys/srops_build.py chooses
that version for isolated builds), and every build rewrites
``srops/_build_info.py`` (read at import by ``srops._ext``).
Editable builds keep their object files in ``build/editable-temp`` so that
ninja recompiles only what changed.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NO_EXT = os.environ.get("SROPS_NO_EXT", "0") == "1"
# set by buildsys/srops_build.py for the hooks that run before torch is installed, and for the sdist
WITHOUT_TORCH = os.environ.get("SROPS_SETUP_WITHOUT_TORCH", "0") == "1"
FORCE_CUDA = os.environ.get("SROPS_FORCE_CUDA", "0") == "1"
NO_CUDA = os.environ.get("SROPS_NO_CUDA", "0") == "1"
DEBUG_BUILD = os.environ.get("SROPS_DEBUG_BUILD", "0") == "1"
DEFAULT_ARCHS = "8.0;9.0+PTX"
RUNTIME_DEPS = ["numpy", "pillow", "pypng", "tqdm", "PyYAML"]  # pypng: 16-bit colour PNG, which Pillow cuts to 8 bits
TORCH_RANGE = "torch>=2.11"  # the pure-Python package (SROPS_NO_EXT=1) runs on any of these
EDITABLE_TEMP = ROOT / "build" / "editable-temp"


def _find_cuda_home() -> str | None:
    """CUDA_HOME/CUDA_PATH if set, else /usr/local/cuda, else the prefix of nvcc on PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        prefix = Path(nvcc).resolve().parent.parent
        if (prefix / "include" / "cuda_runtime.h").exists():
            return str(prefix)
    return None


def _pip_cuda_includes() -> list[str]:
    """Header folders of pip's CUDA wheels (site-packages/nvidia/cu13/include, ...).

    torch's CUDA headers include cublas_v2.h and cusparse.h, which a bare nvcc
    install may lack; the nvidia-* wheels that come with a CUDA torch carry them.
    """
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[str] = []
    for base in spec.submodule_search_locations:
        found += sorted(glob.glob(os.path.join(base, "cu*", "include")))
    return found


def _torch_requirement() -> str:
    """``torch==<installed distribution version>`` (local label kept: 2.13.0+cpu stays a CPU build)."""
    from importlib.metadata import version

    return f"torch=={version('torch')}"


BUILD = {"with_ext": False, "with_cuda": False, "archs": "", "torch": None, "torch_cuda": None}


def build_info_text() -> str:
    """The text of ``srops/_build_info.py`` for this build."""
    return (
        "# Written by setup.py at every build; not tracked by git.\n"
        f"WITH_EXT = {BUILD['with_ext']!r}\n"
        f"TORCH_VERSION = {BUILD['torch']!r}  # torch.__version__ the extension was compiled against\n"
        f"TORCH_CUDA_VERSION = {BUILD['torch_cuda']!r}\n"
        f"WITH_CUDA = {BUILD['with_cuda']!r}\n"
        f"CUDA_ARCH_LIST = {BUILD['archs']!r}\n"
    )


class BuildPyWithInfo(build_py):
    """build_py that first rewrites ``srops/_build_info.py``, so no earlier build's file survives.

    Without the extension, compiled ``srops/_C*.so`` files left in the source
    tree by an earlier editable build are removed too (they would still load).
    """

    def run(self) -> None:
        (ROOT / "srops" / "_build_info.py").write_text(build_info_text())
        if not BUILD["with_ext"]:
            for stale in (ROOT / "srops").glob("_C.*"):
                stale.unlink()
        super().run()


def _extensions() -> tuple[list, dict]:
    if WITHOUT_TORCH:
        return [], {}
    if NO_EXT:
        print("srops: SROPS_NO_EXT=1, installing the pure-Python package", file=sys.stderr)
        return [], {"build_py": BuildPyWithInfo}
    cuda_home = _find_cuda_home()
    if cuda_home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = cuda_home  # read by cpp_extension at import
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:  # pragma: no cover - build-time message
        raise SystemExit(
            "srops: the extension is compiled against torch, which this build environment lacks.\n"
            "    pip install .                          (an isolated build fetches the matching torch)\n"
            "    pip install --no-build-isolation .     (needs torch, setuptools>=77 and ninja installed first)\n"
            "    SROPS_NO_EXT=1 pip install .           (pure Python, reference backends only)\n"
            f"({exc})"
        )

    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    why_not = None
    if NO_CUDA:
        why_not = "SROPS_NO_CUDA=1 is set"
    elif torch.version.cuda is None:
        why_not = "torch is a CPU-only build"
    elif cpp_extension.CUDA_HOME is None:
        why_not = "nvcc not found (set CUDA_HOME)"
    with_cuda = why_not is None and bool(cuda_sources)
    if FORCE_CUDA and not with_cuda:
        raise SystemExit(f"srops: SROPS_FORCE_CUDA=1 but CUDA cannot be built: {why_not}")
    if why_not:
        print(f"srops: building without CUDA: {why_not}", file=sys.stderr)

    include_dirs = [str(ROOT / "csrc")]
    cxx_flags = ["-O3", "-fopenmp", "-g" if DEBUG_BUILD else "-g0"]
    archs = ""
    if with_cuda:
        archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        include_dirs += _pip_cuda_includes()
        ext = cpp_extension.CUDAExtension(
            "srops._C",
            cpu_sources + cuda_sources,
            include_dirs=include_dirs,
            define_macros=[("SROPS_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = cpp_extension.CppExtension(
            "srops._C",
            cpu_sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    BUILD.update(with_ext=True, with_cuda=with_cuda, archs=archs if with_cuda else "",
                 torch=torch.__version__, torch_cuda=torch.version.cuda)
    return [ext], {"build_ext": _build_ext_class(cpp_extension.BuildExtension), "build_py": BuildPyWithInfo}


def _build_ext_class(base: type) -> type:
    """torch's BuildExtension (ninja) whose editable builds keep one object folder between runs."""

    class BuildExt(base):
        def finalize_options(self) -> None:
            super().finalize_options()
            if getattr(self, "editable_mode", False) or self.inplace:
                self.build_temp = str(EDITABLE_TEMP)

    return BuildExt.with_options(use_ninja=True)


ext_modules, cmdclass = _extensions()
install_requires = [_torch_requirement() if BUILD["with_ext"] else TORCH_RANGE] + RUNTIME_DEPS

setup(
    packages=find_packages(include=["srops", "srops.*"])
    + ["srops.models.configs"]  # the presets (data only, no __init__.py)
    + ["srops.data", "srops.data.T91", "srops.data.Set5"],  # the bundled T91 and Set5 images: data/T91 resolves to them from an installed copy too
    package_dir={"srops": "srops", "srops.data": "data"},
    package_data={"srops.models.configs": ["*.yml"], "srops.data": ["README.md"],
                  "srops.data.T91": ["*.png"], "srops.data.Set5": ["*.png"]},
    install_requires=install_requires,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
