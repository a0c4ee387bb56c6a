"""Every x86 path of the C++ CPU kernels can be selected from the environment.

The CBAM kernels are compiled for baseline x86-64 and for AVX2, the covariance row loops for baseline, AVX2 and
AVX-512 (their products are ATen's BLAS), the non-local flash kernels for SSE2, AVX2 and AVX-512; the CPU decides, capped by ``SROPS_CPU_NO_AVX512=1``, ``SROPS_CPU_NO_AVX2=1`` and
``ATEN_CPU_CAPABILITY`` (``avx2``, ``default``), read once per process. ``torch.ops.srops._cpu_kernel_paths``
says which paths run; the suite's portable CI legs rely on these variables.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import srops
from srops import _ext

pytestmark = [
    pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").is_file(),
                       reason="x86-64 Linux only (the paths are x86 instruction sets, read from /proc/cpuinfo)"),
]

KNOBS = ("SROPS_CPU_NO_AVX512", "SROPS_CPU_NO_AVX2", "ATEN_CPU_CAPABILITY")


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _paths(tmp_path: Path, **knobs: str) -> dict[str, str]:
    """The kernel paths a fresh process reports with exactly ``knobs`` set (the ones inherited are removed)."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(knobs)
    env["PYTHONPATH"] = str(Path(srops.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import srops, torch; print(torch.ops.srops._cpu_kernel_paths())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(item.split("=") for item in out.stdout.split())


@pytest.mark.parametrize("knobs, cap", [
    ({}, "avx512"),
    ({"SROPS_CPU_NO_AVX512": "0"}, "avx512"),
    ({"SROPS_CPU_NO_AVX512": "1"}, "avx2"),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
    ({"ATEN_CPU_CAPABILITY": "default"}, "base"),
    ({"SROPS_CPU_NO_AVX2": "1"}, "base"),
    ({"SROPS_CPU_NO_AVX512": "1", "ATEN_CPU_CAPABILITY": "avx512"}, "avx2"),
])
def test_environment_caps_the_kernel_paths(tmp_path: Path, knobs: dict, cap: str) -> None:
    """Each path runs exactly when the CPU has its instructions and the environment allows its level."""
    flags = _cpu_flags()
    level = {"base": 0, "avx2": 1, "avx512": 2}[cap]
    want = {
        "cbam": "avx2" if "avx2" in flags and level >= 1 else "base",
        "covpool": ("avx512" if {"avx512f", "fma"} <= flags and level >= 2
                    else "avx2" if "avx2" in flags and level >= 1 else "base"),
        "nonlocal_attention": ("avx512" if {"avx512f", "fma"} <= flags and level >= 2
                               else "avx2" if {"avx2", "fma"} <= flags and level >= 1 else "base"),
    }
    assert _paths(tmp_path, **knobs) == want, knobs


def test_results_folder_names_the_kernel_path(tmp_path: Path) -> None:
    """CPUs of one model name differ in instruction sets (2-core "AMD EPYC" machines with and without
    AVX-512 have both run this suite): the benchmark results folder (``srops.info.device_name``) names the
    non-local kernels' path, so one machine's figures do not land in, or overwrite, the other's."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env["PYTHONPATH"] = str(Path(srops.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import srops.info as i, torch; print(i.device_name(), torch.ops.srops._cpu_kernel_paths())"
    for knobs in ({}, {"SROPS_CPU_NO_AVX512": "1"}, {"SROPS_CPU_NO_AVX2": "1"}):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, **knobs},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        name, *paths = out.stdout.split()
        path = dict(item.split("=") for item in paths)["nonlocal_attention"]
        assert name.startswith("cpu-") and name.endswith("-" + path), (knobs, name, path)
