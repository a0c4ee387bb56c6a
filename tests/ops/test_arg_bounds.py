"""Argument bounds: eps >= 0, a bounded iteration count, and SROPS_BACKEND typos raise named errors."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import SecondOrderAttention, _backend, _ext

BACKENDS = ["reference"] + (["cpu"] if _ext.HAS_EXT else [])


@pytest.mark.parametrize("eps", [-1e-5, -1, float("nan"), float("inf")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_covpool_sqrtm_eps_must_be_non_negative(eps, backend):
    x = torch.ones(2, 3, 4, 4)  # a constant map: trace 0
    with pytest.raises(ValueError, match=r"srops\.covpool_sqrtm: 'eps' must be a finite float >= 0"):
        F.covpool_sqrtm(x, 5, eps, backend=backend)


@pytest.mark.parametrize("eps", [-1.0, float("nan")])
def test_sqrtm_ns_eps_must_be_non_negative(eps):
    with pytest.raises(ValueError, match=r"srops\.sqrtm_ns: 'eps' must be a finite float >= 0"):
        F.sqrtm_ns(torch.zeros(1, 3, 3), 5, eps)


@pytest.mark.parametrize("eps", [-1e-5, float("nan")])
def test_second_order_attention_eps_checked_at_construction(eps):
    with pytest.raises(ValueError, match=r"srops\.SecondOrderAttention: 'eps' must be a finite float >= 0"):
        SecondOrderAttention(8, eps=eps)


@pytest.mark.parametrize("iterations", [2**31, 2**62, 10**6])
@pytest.mark.parametrize("backend", BACKENDS)
def test_covpool_sqrtm_iterations_bounded(iterations, backend):
    with pytest.raises(ValueError, match=r"srops\.covpool_sqrtm: 'iterations' must be an int in \[1, 256\]"):
        F.covpool_sqrtm(torch.randn(1, 2, 3, 3), iterations, backend=backend)


def test_sqrtm_ns_and_module_iterations_bounded():
    with pytest.raises(ValueError, match=r"srops\.sqrtm_ns: 'iterations' must be an int in \[1, 256\]"):
        F.sqrtm_ns(torch.eye(2)[None], 2**31)
    with pytest.raises(ValueError, match=r"srops\.SecondOrderAttention: 'iterations' must be an int in \[1, 256\]"):
        SecondOrderAttention(8, iterations=2**62)


def test_largest_iteration_count_runs():
    y = F.covpool_sqrtm(torch.randn(1, 2, 3, 3, dtype=torch.float64), 256, backend="reference")
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    "value, pattern",
    [
        ("refernce", r"SROPS_BACKEND: unknown backend 'refernce'; valid backends: \('cuda', 'triton', 'cpu', 'sdpa', 'reference'\)"),
        ("REFERENCE", r"SROPS_BACKEND: unknown backend 'REFERENCE'"),
        ("covpol=reference", r"SROPS_BACKEND: unknown op 'covpol'; valid ops: .*'covpool'"),
        ("covpool=refernce", r"SROPS_BACKEND: unknown backend 'refernce' for op 'covpool'"),
        ("covpool=reference,,", r"SROPS_BACKEND: item '' is not of the form op=backend"),
        ("covpool", r"SROPS_BACKEND: unknown backend 'covpool'"),
    ],
)
def test_env_typos_raise(monkeypatch, value, pattern):
    monkeypatch.setenv("SROPS_BACKEND", value)
    with pytest.raises(ValueError, match=pattern):
        F.covpool(torch.randn(1, 2, 3))


def test_env_valid_forms_still_work(monkeypatch):
    x = torch.randn(1, 2, 3)
    for value in ("reference", " reference ", "covpool=reference", "sdpa", "nonlocal_attention=sdpa, covpool=reference"):
        monkeypatch.setenv("SROPS_BACKEND", value)
        expected = "reference" if "reference" in value else _backend.default_order("covpool", "cpu")[0]
        assert _backend.select("covpool", (x,)).name == expected, value


@pytest.mark.skipif(not _ext.HAS_EXT, reason="srops._C not built")
@pytest.mark.parametrize("iterations, eps", [(2**31, 1e-5), (257, 1e-5), (3, -1e-300), (3, -1.0)])
def test_cpp_op_bounds(iterations, eps):
    x = torch.randn(1, 2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_fwd: (iterations must be in \[1, 256\]|eps must be finite and >= 0)"):
        torch.ops.srops.covpool_sqrtm_fwd(x, iterations, eps, False)
