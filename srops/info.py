"""``python -m srops.info``: build, CUDA, Triton and per-op backend report.

``python -m srops.info --results-dir`` creates and prints the folder where
benchmark and GPU-test results of this machine go: ``$SROPS_RESULTS_DIR`` if
set, else ``bench/results/<device>/``.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
from pathlib import Path

import torch

import srops
from srops import _backend, _ext


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def device_name() -> str:
    """The CUDA device's name if one is visible, else the CPU's and the x86 path of srops' non-local
    kernels (``cpu-amd-epyc-avx2``: one model name covers CPUs with and without AVX-512), as a
    folder-safe slug."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"cpu-{_cpu_model() or platform.machine()}-{_cpu_path()}"
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _cpu_path() -> str:
    """The path srops' non-local CPU kernels take (``avx512``, ``avx2``, ``base``), else ATen's capability."""
    for item in _cpu_kernel_paths().split():
        op, _, path = item.partition("=")
        if op == "nonlocal_attention" and path:
            return path
    return torch.backends.cpu.get_cpu_capability()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def environment() -> dict[str, str]:
    """Versions and device facts recorded beside every benchmark result."""
    build = {}
    try:
        from srops._build_info import CUDA_ARCH_LIST, TORCH_VERSION  # written by setup.py, git-ignored

        build = {"built against torch": TORCH_VERSION, "CUDA archs": CUDA_ARCH_LIST or "-"}
    except ImportError:
        build = {"built against torch": "unknown (no srops/_build_info.py)"}
    cuda_rt = torch.ops.srops._cuda_compile_version() if _ext.HAS_CUDA_EXT else 0
    info = {
        "srops": srops.__version__,
        "srops location": str(Path(srops.__file__).parent),
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "triton": triton_version() or "not installed",
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else (_cpu_model() or "cpu"),
        "CPU threads": str(torch.get_num_threads()),
        "extension": "loaded" if _ext.HAS_EXT else f"missing ({_ext.EXT_ERROR})",
        "compiled with": "CPU + CUDA" if _ext.HAS_CUDA_EXT else ("CPU" if _ext.HAS_EXT else "-"),
        "CPU kernel paths": _cpu_kernel_paths(),
        "CUDA compiled against": f"{cuda_rt // 1000}.{cuda_rt % 1000 // 10}" if cuda_rt else "-",
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", ""),
    }
    info.update(build)
    return info


def _cpu_kernel_paths() -> str:
    """The x86 paths of the C++ CPU kernels, e.g. ``cbam=avx2 covpool=avx512`` (after
    ``SROPS_CPU_NO_AVX512`` / ``SROPS_CPU_NO_AVX2`` / ``ATEN_CPU_CAPABILITY``), or ``-``."""
    if not _ext.HAS_EXT:
        return "-"
    try:
        return torch.ops.srops._cpu_kernel_paths()
    except (AttributeError, RuntimeError):  # a binary built before the op existed
        return "unknown (rebuild srops)"


def results_dir() -> Path:
    path = Path(os.environ.get("SROPS_RESULTS_DIR") or Path("bench") / "results" / device_name())
    path.mkdir(parents=True, exist_ok=True)
    return path


def report() -> str:
    lines = ["srops build and environment"]
    for key, value in environment().items():
        lines.append(f"  {key:22s} {value}")
    lines.append(f"  {'registered ops':22s} {', '.join(_ext.registered_ops()) or '-'}")
    lines.append("")
    lines.append("backends per op (first runnable in preference order is the default)")
    for op, per_backend in _backend.backends().items():
        lines.append(f"  {op}")
        lines.append(f"    default order cpu: {', '.join(_backend.default_order(op, 'cpu'))}; "
                     f"cuda: {', '.join(_backend.default_order(op, 'cuda'))}")
        for name, row in per_backend.items():
            for dt, why in row.items():
                lines.append(f"    {name:10s} {dt:5s} {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m srops.info", description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", action="store_true", help="create and print this machine's results folder")
    args = parser.parse_args(argv)
    if args.results_dir:
        print(results_dir())
    else:
        print(report())


if __name__ == "__main__":
    main()
