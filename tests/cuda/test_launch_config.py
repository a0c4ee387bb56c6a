"""Launch configurations of the CUDA kernels, on CPU, for the GPUs srops meets (H100, H200, A100).

The launchers choose grids, splits, shared-memory bytes and the shared-vs-scratch path through plain host
functions of the problem size and a ``{sms, smem_optin}`` device description (csrc/*/*_launch.cpp),
exposed as ``torch.ops.srops_launch.*``: every configuration a GPU will see is checked here. The kernel
headers must also compile with a host compiler through a stand-in for the CUDA execution model, and the
CBAM kernels that need no block cooperation run there against direct loops.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from srops import _ext

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")

ROOT = Path(__file__).resolve().parents[2]
DEVICES = {"H100": (132, 232448), "H200": (132, 232448), "A100": (108, 166912)}
KB = 1024


def launch():
    return torch.ops.srops_launch


def _plan(C, elem, mats, static, dev):
    sms, optin = DEVICES[dev]
    return launch().covpool_sqrtm_plan(C, elem, mats, static, sms, optin)


def test_constants():
    max_c, fwd_mats, bwd_mats, threads = launch().constants()
    assert (max_c, fwd_mats, bwd_mats, threads) == (128, 4, 6, 256)


@pytest.mark.parametrize("dev", list(DEVICES))
def test_sqrtm_c64_float32_in_shared_memory(dev):
    assert _plan(64, 4, 4, 0, dev) == ("shared", 64 * 64 * 4 * 4)
    assert _plan(64, 4, 6, KB, dev) == ("shared", 64 * 64 * 4 * 6)


def test_sqrtm_c98_float32_near_the_opt_in_limit():
    # backward: 6 * 98² * 4 = 230,496 bytes + 1 KB static = 231,520: fits 227 KB (sm_90), not 163 KB (A100)
    assert _plan(98, 4, 6, KB, "H100") == ("shared", 230496)
    assert _plan(98, 4, 6, KB, "H200") == ("shared", 230496)
    assert _plan(98, 4, 6, KB, "A100") == ("scratch", 0)
    # 2,000 static bytes push it over the sm_90 limit: the global-scratch path, not a refused launch
    assert _plan(98, 4, 6, 2000, "H100") == ("scratch", 0)
    # forward: 4 * 98² * 4 = 153,664 bytes fits every device
    for dev in DEVICES:
        assert _plan(98, 4, 4, 0, dev) == ("shared", 153664)


def test_sqrtm_c100_backward_in_scratch_and_c130_on_bmm():
    for dev in DEVICES:
        assert _plan(100, 4, 6, KB, dev) == ("scratch", 0)  # 240,000 bytes: over every opt-in limit
        assert _plan(100, 4, 4, 0, dev)[0] == "shared"  # the forward's 160,000 bytes still fit
        assert _plan(128, 8, 4, 0, dev) == ("scratch", 0)
        assert _plan(129, 4, 4, 0, dev) == ("bmm", 0)
        assert _plan(130, 4, 6, KB, dev) == ("bmm", 0)


@pytest.mark.parametrize("dev", list(DEVICES))
def test_sqrtm_plan_never_asks_for_more_than_the_device_allows(dev):
    sms, optin = DEVICES[dev]
    for C in range(1, 131):
        for elem in (4, 8):
            for mats, static in ((4, 0), (6, 256 * elem), (6, 4096)):
                path, dyn = _plan(C, elem, mats, static, dev)
                bytes_ = mats * C * C * elem
                if C > 128:
                    assert path == "bmm"
                elif bytes_ + static <= optin:
                    assert (path, dyn) == ("shared", bytes_)
                else:
                    assert (path, dyn) == ("scratch", 0), (C, elem, mats, static)


@pytest.mark.parametrize("dev", list(DEVICES))
@pytest.mark.parametrize("B,C,M", [(1, 64, 518400), (16, 64, 2304), (2, 17, 5), (1, 130, 300), (64, 256, 2304),
                                   (1, 1, 1), (3, 100, 65536 * 300), (1, 64, 1023), (1, 300, 10**6)])
def test_gram_split(dev, B, C, M):
    sms = DEVICES[dev][0]
    splits, split_len = launch().gram_split(B, C, M, sms)
    assert split_len % 4 == 0  # every chunk of the float32 copy starts 16-byte aligned
    assert splits * split_len >= M and (splits - 1) * split_len < M  # every chunk non-empty, all of M covered
    assert splits == 1 or split_len >= 1024  # no chunk shorter than kGramMinSplit
    tiles = math.ceil(C / 128) ** 2
    if splits < max(1, M // 1024) - 1:
        assert B * tiles * splits >= 2 * sms - B * tiles  # about two GEMM tiles per SM unless capped by M
    if splits > 1:
        assert B * tiles * (splits - 1) < 2 * sms  # no more chunks than needed


def test_gram_split_examples():
    assert launch().gram_split(1, 64, 518400, 132) == (264, 1964)
    assert launch().gram_split(1, 64, 518400, 108) == (216, 2400)
    assert launch().gram_split(16, 64, 2304, 132) == (2, 1152)
    assert launch().gram_split(1, 64, 5, 132) == (1, 8)


@pytest.mark.parametrize("rows,cols", [(1, 1), (64 * 264, 1964), (70000, 5), (3, 2**30)])
def test_cov_grid(rows, cols):
    gx, gy = launch().cov_grid(rows, cols)
    assert 1 <= gy <= min(rows, 65535) and 1 <= gx <= 2**20
    assert gx == min(math.ceil(cols / 256), 2**20) and gy == min(rows, 65535)


def _chunks(x, splits, split_len):
    """x − μ in the centre kernel's layout [B, S, C, L], zero past M (as documented in centred_gemm.h)."""
    b, c, m = x.shape
    xc = torch.zeros(b, c, splits * split_len, dtype=x.dtype)
    xc[:, :, :m] = x - x.mean(dim=2, keepdim=True)
    return xc.view(b, c, splits, split_len).transpose(1, 2).contiguous()


@pytest.mark.parametrize("B,C,M,sms", [(2, 17, 4999, 132), (1, 130, 300, 132), (3, 5, 1, 108), (1, 64, 9000, 8)])
def test_gram_of_chunks_against_float64(B, C, M, sms):
    """The CUDA covariance's GEMM step on the plan's chunks equals the float64 covariance, exactly symmetric."""
    from srops.ops.covpool.reference import covpool_ref
    torch.manual_seed(0)
    x = torch.randn(B, C, M, dtype=torch.float64) * 3 + 100  # a large mean: centring must come first
    splits, split_len = launch().gram_split(B, C, M, sms)
    want = covpool_ref(x)
    got64 = launch().gram_of_chunks(_chunks(x, splits, split_len), M)
    torch.testing.assert_close(got64, want, rtol=1e-12, atol=1e-12)
    got = launch().gram_of_chunks(_chunks(x.float(), splits, split_len), M)
    assert torch.equal(got, got.transpose(1, 2))
    err, ref_err = (got.double() - want).abs().max(), (covpool_ref(x.float()).double() - want).abs().max()
    assert err <= 2 * ref_err + 1e-6, (err, ref_err)


def test_gram_of_chunks_rejects_a_bad_layout():
    with pytest.raises(ValueError, match="chunks"):
        launch().gram_of_chunks(torch.zeros(2, 3, 4), 4)


@pytest.mark.parametrize("dev", list(DEVICES))
@pytest.mark.parametrize("rows,N", [(64, 518400), (1024, 2304), (2, 100), (1, 10**9), (3, 5000), (4096, 1)])
def test_cbam_channel_pool_parts(dev, rows, N):
    sms = DEVICES[dev][0]
    parts = launch().cbam_channel_pool_parts(rows, N, sms)
    assert 1 <= parts <= 65535
    if parts > 1:
        assert N // parts >= 4 * 256  # each part keeps every thread busy for at least 4 elements
        assert rows * (parts - 1) < 4 * sms  # no more parts than about four blocks per SM need
    if rows >= 4 * sms or N < 2 * 4 * 256:
        assert parts == 1


def test_cbam_channel_pool_parts_examples():
    assert launch().cbam_channel_pool_parts(64, 518400, 132) == 9
    assert launch().cbam_channel_pool_parts(64, 518400, 108) == 7
    assert launch().cbam_channel_pool_parts(1024, 2304, 132) == 1


@pytest.mark.parametrize("rows,N", [(16, 2304), (1024, 2304), (1, 518400), (70000, 7), (1, 1), (2, 2**30)])
def test_cbam_position_grid(rows, N):
    x, y = launch().cbam_position_grid(rows, N)
    assert 1 <= y <= 65535 and y == min(rows, 65535)
    assert 1 <= x <= 2**20
    assert x == min(math.ceil(N / 256), 2**20)  # one thread per position up to the cap; the kernels stride on


def test_cbam_grid_stride_blocks():
    assert launch().cbam_grid_stride_blocks(1) == 1
    assert launch().cbam_grid_stride_blocks(257) == 2
    assert launch().cbam_grid_stride_blocks(2**40) == 2**20


@pytest.mark.parametrize("elem,width", [(2, 8), (4, 4), (8, 2)])
def test_cbam_vector_plan(elem, width):
    """16-byte packs of V = 16 / elem positions where N is a multiple of V and every address is aligned,
    else one element per thread."""
    plan = launch().cbam_vector_plan
    assert plan(64 * width, elem, [0, 256, 4096]) == (width, 64, True)  # 0: an absent tensor
    assert plan(64 * width + 1, elem, [256]) == (1, 64 * width + 1, False)  # N not a multiple
    assert plan(64 * width, elem, [256, 256 + elem]) == (1, 64 * width, False)  # one misaligned tensor
    assert plan(1, elem, []) == (1, 1, False)


def test_cbam_index_range_checks_are_debug_only_on_cuda(monkeypatch):
    monkeypatch.delenv("SROPS_DEBUG_CHECKS", raising=False)
    assert launch().cbam_index_range_checked("cpu") is True
    assert launch().cbam_index_range_checked("cuda") is False  # no .item() sync per backward on CUDA
    monkeypatch.setenv("SROPS_DEBUG_CHECKS", "1")
    assert launch().cbam_index_range_checked("cuda") is True


def test_cbam_cpu_backward_still_rejects_out_of_range_indices():
    x = torch.randn(1, 3, 2, 2)
    grad = torch.randn_like(x)
    gp = torch.randn(1, 2, 2, 2)
    bad = torch.full((1, 2, 2), 3, dtype=torch.int64)  # channel 3 of 3
    with pytest.raises(ValueError, match="spatial_argmax must hold channel indices"):
        torch.ops.srops.cbam_input_bwd(grad, None, None, gp, bad, None, None, True, False)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler (g++)")
def test_kernel_headers_compile_on_the_host():
    res = subprocess.run(["g++", "-std=c++20", "-fsyntax-only", f"-I{ROOT / 'csrc'}", f"-I{ROOT}",
                          str(ROOT / "tests" / "cuda" / "kernels_compile.cpp")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler (g++)")
@pytest.mark.parametrize("program", ["kernels_run.cpp", "sqrtm_run.cpp"])
def test_kernels_run_on_the_host(program, tmp_path):
    """kernels_run.cpp: the CBAM 2-D-grid kernels, one thread per block on a grid smaller than the problem
    (both grid-stride loops taken), against direct loops, outputs starting as NaN. sqrtm_run.cpp: the
    Newton–Schulz kernels with 256 threads per block at real barriers, the forward against direct matrix
    loops and the shared-memory and global-scratch paths of forward and backward bitwise equal."""
    exe = tmp_path / "run"
    build = subprocess.run(["g++", "-std=c++20", "-O1", "-pthread", f"-I{ROOT / 'csrc'}", f"-I{ROOT}",
                            str(ROOT / "tests" / "cuda" / program), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout[-3000:]
