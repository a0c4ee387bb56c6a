"""Build srops and its one extension, ``srops._C``.

* C++ CPU sources (``csrc/*.cpp``, ``csrc/*/*.cpp``) are always compiled.
* CUDA sources (``csrc/**/*.cu``) are compiled whenever nvcc and a CUDA build
  of torch are present, with or without a GPU. ``torch.cuda.is_available()`` is
  never consulted.
* ``SROPS_NO_EXT=1`` installs the pure-Python package (reference backends only).
* ``SROPS_NO_CUDA=1`` builds the C++ CPU kernels only (about half the build time).
* ``SROPS_FORCE_CUDA=1`` fails loudly if the CUDA sources cannot be built.
* ``TORCH_CUDA_ARCH_LIST`` is respected; when unset it defaults to
  ``8.0;9.0+PTX`` (A100, H100/H200, PTX for newer parts).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
NO_EXT = os.environ.get("SROPS_NO_EXT", "0") == "1"
FORCE_CUDA = os.environ.get("SROPS_FORCE_CUDA", "0") == "1"
NO_CUDA = os.environ.get("SROPS_NO_CUDA", "0") == "1"
DEFAULT_ARCHS = "8.0;9.0+PTX"


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


def _write_build_info(with_cuda: bool, archs: str) -> None:
    import torch

    text = (
        "# Written by setup.py at build time; not tracked by git.\n"
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"TORCH_CUDA_VERSION = {torch.version.cuda!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"CUDA_ARCH_LIST = {archs if with_cuda else ''!r}\n"
    )
    (ROOT / "srops" / "_build_info.py").write_text(text)


def _extensions() -> tuple[list, dict]:
    if NO_EXT:
        print("srops: SROPS_NO_EXT=1, installing the pure-Python package", file=sys.stderr)
        return [], {}
    cuda_home = _find_cuda_home()
    if cuda_home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = cuda_home  # read by cpp_extension at import
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:  # pragma: no cover - build-time message
        raise SystemExit(
            "srops: torch must be installed before building the extension, and the build must see it:\n"
            "    pip install torch && pip install --no-build-isolation .\n"
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
    cxx_flags = ["-O3", "-fopenmp"]
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
    _write_build_info(with_cuda, archs)
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["srops", "srops.*"])
    + ["srops.models", "srops.models.configs"]  # configs: the presets (data only, no __init__.py)
    + [f"srops.models.{p}" for p in find_packages("models")],
    package_dir={"srops": "srops", "srops.models": "models"},
    package_data={"srops.models.configs": ["*.yml"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
