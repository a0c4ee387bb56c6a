"""tools/sass_cuda.py's counting, and the 16-byte accesses of the vectorised CBAM kernels in their sm_90 SASS
(compiled here with nvcc; no GPU needed)."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tools import sass_cuda

ROOT = Path(__file__).resolve().parents[2]


def test_a_vector_access_counts_the_elements_it_moves():
    assert sass_cuda.elements_of("STG.E.128", 4) == 4
    assert sass_cuda.elements_of("LDG.E.128.CONSTANT", 2) == 8
    assert sass_cuda.elements_of("STG.E.U16", 2) == 1
    assert sass_cuda.elements_of("STG.E", 4) == 1
    assert sass_cuda.elements_of("LDG.E.64", 8) == 1
    assert sass_cuda.elem_size("cbam_kernels::apply_kernel<c10::BFloat16, float, true>") == 2
    assert sass_cuda.elem_size("cbam_kernels::apply_kernel<double, double, false>") == 8
    assert sass_cuda.elem_size("covpool_kernels::centre_kernel<c10::BFloat16, float>") == 4  # stores float


def test_loop_stats_per_element():
    body = [(0x10, "LDG.E.128 R4, desc[UR4][R2.64]"), (0x20, "FMUL R4, R4, R8"), (0x30, "STG.E.128 desc[UR4][R6.64], R4"),
            (0x40, "@!P0 BRA 0x10")]
    loop = sass_cuda.innermost_loops(body)
    assert loop == [(0, 3)]
    stats = sass_cuda.loop_stats(body, loop[0], ("STG", 1), 4)
    assert stats["elements"] == 4 and stats["per_element"] == 1.0
    assert sass_cuda.loop_stats(body, loop[0], ("STG", 1), 2)["elements"] == 8


def test_packed_loops_count_only_the_packed_loads_where_asked():
    body = [(0x10, "LDG.E.128 R4, desc[UR4][R2.64]"), (0x20, "LDG.E R9, desc[UR4][R12.64]"),
            (0x30, "FMNMX R4, R4, R9, !PT"), (0x40, "@!P0 BRA 0x10")]
    stats = sass_cuda.loop_stats(body, (0, 3), ("LDG", 2, 1), 4)
    assert stats["elements"] == 4 and stats["per_element"] == 1.0  # the gate's load is not an element
    assert sass_cuda.loop_stats(body, (0, 3), ("LDG", 2), 4)["elements"] == 2.5


def test_base_name_drops_accumulation_and_flags():
    assert sass_cuda.base_name("cbam_kernels::apply_kernel<c10::Half, float, true>") == "apply_kernel<c10::Half>"
    assert sass_cuda.base_name("sqrtm_kernels::forward_kernel<float, true>") == "forward_kernel<float>"
    assert sass_cuda.base_name("cbam_kernels::apply_kernel<double, double>") == "apply_kernel<double>"


def _have_toolchain() -> bool:
    nvcc = shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists()
    try:
        sass_cuda.cuobjdump()
    except SystemExit:
        return False
    return bool(nvcc) and importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not _have_toolchain(), reason="needs nvcc and cuobjdump (triton's wheel) to compile sm_90 SASS")
def test_vectorised_cbam_kernels_use_16_byte_accesses(tmp_path):
    """The aligned instantiations of apply_kernel / input_backward_kernel load and store 128 bits at a time;
    the one-element ones do not."""
    cubins = sass_cuda.compile_cubins(ROOT / "csrc", tmp_path, only=["cbam_cuda.cu"])
    funcs = sass_cuda.sass_functions(cubins[0])
    names = sass_cuda.demangle(list(funcs))
    seen = 0
    for mangled, body in funcs.items():
        pretty = names[mangled]
        if "apply_kernel<" not in pretty and "input_backward_kernel<" not in pretty:
            continue
        ops = [sass_cuda.opcode(t) for _, t in body]
        wide = [o for o in ops if o.split(".")[0] in ("LDG", "STG") and ".128" in o]
        if ", true>" in pretty:
            assert any(o.startswith("STG") for o in wide) and any(o.startswith("LDG") for o in wide), pretty
        else:
            assert not wide, pretty
        seen += 1
    assert seen == 16  # 2 kernels × 4 dtypes × aligned or not
