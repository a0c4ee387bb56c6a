"""``covpool``, ``sqrtm_ns``, ``covpool_sqrtm``: checks, backend registration, dispatch."""
from __future__ import annotations

import torch

from srops import _backend, _ext
from srops._checks import check_dim_size, check_float, check_int, check_tensor
from srops.ops.covpool.reference import covpool_ref, covpool_sqrtm_ref, sqrtm_ns_ref

_ALL = ("cpu", "cuda")
MAX_ITERATIONS = 256  # Newton–Schulz converges in tens of steps; the saved iterates grow as 3(N-1)·C²
_backend.register(_backend.Backend("covpool", "reference", covpool_ref, devices=_ALL))
_backend.register(_backend.Backend("sqrtm_ns", "reference", sqrtm_ns_ref, devices=_ALL))
_backend.register(_backend.Backend("covpool_sqrtm", "reference", covpool_sqrtm_ref, devices=_ALL))

if _ext.HAS_EXT:
    from srops.ops.covpool.ext_impl import covpool_ext
    from srops.ops.covpool.ext_sqrtm import covpool_sqrtm_cpu, covpool_sqrtm_cuda
else:
    covpool_ext = covpool_sqrtm_cpu = covpool_sqrtm_cuda = None  # type: ignore[assignment]


_COVPOOL_OPS = _ext.fwd_bwd("covpool")
_SQRTM_OPS = _ext.fwd_bwd("covpool_sqrtm")
_SQRTM_FNS = {"cpu": covpool_sqrtm_cpu, "cuda": covpool_sqrtm_cuda}
for _name, _key in (("cpu", "CPU"), ("cuda", "CUDA")):
    _backend.register(_backend.Backend("covpool", _name, covpool_ext, devices=(_name,),
                                       available=_ext.kernel_availability(_COVPOOL_OPS, _key)))
    _backend.register(_backend.Backend("covpool_sqrtm", _name, _SQRTM_FNS[_name], devices=(_name,),
                                       available=_ext.kernel_availability(_SQRTM_OPS, _key)))
# CPU: the kernels run every large product on ATen's batched GEMM, the BLAS the reference's torch.bmm
# uses on that machine, and save work around it (one centring pass, the analytic backward, one GEMM for
# dx instead of autograd's two), so they are never slower than the reference by construction.
_backend.set_order("covpool", "cpu", ("cpu", "reference"))
_backend.set_order("covpool_sqrtm", "cpu", ("cpu", "reference"))
for _op in ("covpool", "covpool_sqrtm"):
    _backend.set_order(_op, "cuda", ("cuda", "reference"))


def _as_bcm(op: str, x: torch.Tensor) -> torch.Tensor:
    check_tensor(op, "x", x, (3, 4), "[B, C, H, W] or [B, C, M]")
    return x.flatten(2) if x.dim() == 4 else x


def covpool(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Biased covariance pooling (iSQRT-COV's Covpool) by the centred formula.

    Args:
        x: features ``[B, C, H, W]`` (or ``[B, C, M]``), any float dtype, any device.
        backend: ``None``, ``"cpu"`` (C++ kernel), ``"cuda"`` or ``"reference"``.

    Returns ``[B, C, C]`` = (1/M)(X − μ1ᵀ)(X − μ1ᵀ)ᵀ with M = H·W, computed in
    float32 (float64 for float64 input) and returned in the input dtype.
    """
    xm = _as_bcm("covpool", x)
    return _backend.select("covpool", (xm,), backend).fn(xm)


def sqrtm_ns(a: torch.Tensor, iterations: int = 5, eps: float = 1e-5, backend: str | None = None) -> torch.Tensor:
    """Matrix square root of SPD ``a`` ``[B, C, C]`` by ``iterations`` coupled Newton–Schulz steps.

    Pre-normalised by t = trace + ``eps`` (``eps >= 0``; 0 is SAN's and fast-MPN-COV's statistic) and
    post-compensated by √t. A matrix with t = 0 (the zero matrix with ``eps = 0``) gives exactly zero with a
    zero gradient, never NaN. ``iterations`` lies in [1, ``MAX_ITERATIONS``] (256). Converges for SPD input
    as iterations grow; for a singular matrix every step amplifies the rounding in its null space, so the
    float32 error grows about 1.5× per step from some 10 steps and the result overflows (inf/NaN) from
    some 25 (float64: some 50).
    """
    check_tensor("sqrtm_ns", "a", a, 3, "[B, C, C]")
    check_dim_size("sqrtm_ns", "a", a, 2, a.shape[1], "square matrices: last dim = C")
    iterations = check_int("sqrtm_ns", "iterations", iterations, 1, MAX_ITERATIONS)
    eps = check_float("sqrtm_ns", "eps", eps, nonnegative=True)
    return _backend.select("sqrtm_ns", (a,), backend).fn(a, iterations, eps)


def covpool_sqrtm(
    x: torch.Tensor, iterations: int = 5, eps: float = 1e-5, row_mean: bool = False, backend: str | None = None
) -> torch.Tensor:
    """``sqrtm_ns(covpool(x))``, optionally reduced to SOCA's statistic.

    Args:
        x: features ``[B, C, H, W]`` (or ``[B, C, M]``).
        iterations: Newton–Schulz iterations in [1, 256] (SAN and fast-MPN-COV use 5). For a
            rank-deficient Σ (H·W ≤ C, or linearly dependent channels) the coupled iteration is unstable
            in floating point, on every backend alike: each step amplifies the rounding in Σ's null
            space, so the float32 error grows about 1.5× per step from some 10 steps (1e-4 at 20) and the
            result overflows (inf/NaN) from some 25 (float64: some 50). A full-rank Σ is stable up to 256.
        eps: added to the trace before normalising, ``>= 0``; 0 reproduces SAN's and fast-MPN-COV's
            statistic. A sample whose t = tr Σ + eps is 0 (every channel constant, eps = 0) gives exactly
            zero and a zero gradient, never NaN.
        row_mean: return the row mean of Σ^½, ``[B, C]`` (SAN's SOCA statistic)
            instead of Σ^½ ``[B, C, C]``.
        backend: ``None`` (the fastest that can run), ``"cpu"`` (C++ kernel), ``"cuda"``
            (CUDA kernel) or ``"reference"``. The compiled kernels fuse covariance, iterations
            and post-compensation and differentiate by the analytic chain of iSQRT-COV; the CPU
            kernel runs its products on the same BLAS as the reference (``torch.bmm``).

    Computed in float32 (float64 for float64 input), returned in the input dtype.
    """
    xm = _as_bcm("covpool_sqrtm", x)
    iterations = check_int("covpool_sqrtm", "iterations", iterations, 1, MAX_ITERATIONS)
    eps = check_float("covpool_sqrtm", "eps", eps, nonnegative=True)
    return _backend.select("covpool_sqrtm", (xm,), backend).fn(xm, iterations, eps, bool(row_mean))
