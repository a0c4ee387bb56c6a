"""Pure-PyTorch covariance pooling and Newton–Schulz matrix square root (iSQRT-COV).

Maths and naming follow docs/ops.md §A. Internals run in float32 (float64 for
float64 input); results are cast back to the input dtype. Autograd gives the
backward pass.
"""
from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def covpool_ref(x: torch.Tensor) -> torch.Tensor:
    """Biased covariance (1/M)(X − μ1ᵀ)(X − μ1ᵀ)ᵀ of x ``[B, C, M]`` → ``[B, C, C]``.

    Centres X first (one copy of X), never the M×M centring matrix.
    """
    xf = x.to(compute_dtype(x.dtype))
    xc = xf - xf.mean(dim=2, keepdim=True)
    return (torch.bmm(xc, xc.transpose(1, 2)) / x.shape[2]).to(x.dtype)


def sqrtm_ns_ref(a: torch.Tensor, iterations: int = 5, eps: float = 1e-5) -> torch.Tensor:
    """Newton–Schulz square root of SPD matrices a ``[B, C, C]``.

    t = tr(a) + eps, A = a/t, coupled iterations Y→√A, Z→1/√A (the last step
    computes Y only), result √t · Y. A zero matrix gives zero, not NaN, also with
    eps = 0: a sample with t = 0 is divided by 1 instead and its result (and gradient)
    is zero.
    """
    af = a.to(compute_dtype(a.dtype))
    c = af.shape[-1]
    eye = torch.eye(c, dtype=af.dtype, device=af.device).expand_as(af)
    trace = af.diagonal(dim1=-2, dim2=-1).sum(-1) + eps
    zero = trace == 0
    trace = torch.where(zero, torch.ones_like(trace), trace)
    A = af / trace[:, None, None]
    if iterations == 1:
        Y = 0.5 * torch.bmm(A, 3.0 * eye - A)
    else:
        T = 0.5 * (3.0 * eye - A)
        Y = torch.bmm(A, T)
        Z = T
        for _ in range(iterations - 2):
            T = 0.5 * (3.0 * eye - torch.bmm(Z, Y))
            Y, Z = torch.bmm(Y, T), torch.bmm(T, Z)
        Y = 0.5 * torch.bmm(Y, 3.0 * eye - torch.bmm(Z, Y))
    return (Y * trace.sqrt()[:, None, None]).masked_fill(zero[:, None, None], 0).to(a.dtype)


def covpool_sqrtm_ref(x: torch.Tensor, iterations: int = 5, eps: float = 1e-5, row_mean: bool = False) -> torch.Tensor:
    """Σ^½ of x ``[B, C, M]``: ``[B, C, C]``, or with ``row_mean`` SOCA's statistic ``[B, C]``
    (mean over rows i of Σ^½_ij, SAN's ``torch.mean(cov_sqrt, 1)``)."""
    xf = x.to(compute_dtype(x.dtype))
    out = sqrtm_ns_ref(covpool_ref(xf), iterations, eps)
    if row_mean:
        out = out.mean(dim=1)
    return out.to(x.dtype)
