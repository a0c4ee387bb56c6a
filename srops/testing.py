"""Test helpers shipped with the package: the suite's comparison rules, each with a worst-element report.

Every numerical comparison in ``tests/`` follows one of four rules, so that the suite passes on any
x86 CPU (the vector width, FMA contraction and summation order of PyTorch's and srops's CPU kernels
differ between AVX-512, AVX2 and the portable paths, and with the thread count):

1. Working precision (float32, float16, bfloat16): two computations of the same maths, ours or a
   peer's, are never compared with each other at a fixed tolerance. Each is compared with a float64
   oracle on the same inputs, and ours may err at most ``factor`` (2) times the reference's own error
   in that dtype, plus a stated absolute floor near zero (:func:`assert_close_to_oracle`). The floor
   is :func:`ulp_floor` of the result's scale: 8 ulp by default; n ulp of the summands' scale (the
   worst-case bound γₙ) for a length-n reduction that may cancel to zero, such as a parameter
   gradient summed over B·H·W positions; float16/bfloat16 results that PyTorch computes in float32
   state their own.
2. Convergence: a sequence of errors is asserted to decrease only while it is above a stated floor,
   e.g. 100 ulp of the dtype times the problem's scale; below it, it must stay below it
   (:func:`assert_decreasing_above`).
3. float64: a tolerance derived from the problem, ``rtol = n · κ · eps`` for an accumulation length
   ``n`` and a condition ``κ`` (:func:`float64_tolerance`). The table entry ``TOLERANCES[float64]``
   (rtol 1e-8 ≈ 4.5e7 eps, atol 1e-10 for outputs of scale ≤ 100) covers every float64 problem of the
   suite, whose ``n · κ`` stays below 1e7; a test whose problem exceeds that states its own.
4. Exact equality (``torch.equal``, ``atol=rtol=0``) only where the maths is exact: integer results,
   copies and permutations, max/argmax routing, bitwise-deterministic paths, the same kernel run twice.

The float32/float16/bfloat16 rows of ``TOLERANCES`` are kept for comparisons of one result with a
float64 oracle where no same-dtype reference exists; rule 1 is the one to use whenever there is one.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

TOLERANCES = {
    torch.float64: dict(atol=1e-10, rtol=1e-8),
    torch.float32: dict(atol=1e-5, rtol=1e-4),
    torch.float16: dict(atol=1e-2, rtol=1e-2),
    torch.bfloat16: dict(atol=5e-2, rtol=5e-2),
}


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon (1 ulp at 1.0) of a floating dtype."""
    return float(torch.finfo(dtype).eps)


def ulp_floor(dtype: torch.dtype, scale: float | torch.Tensor, ulps: float = 8.0) -> float:
    """An absolute floor of ``ulps`` units in the last place of ``dtype`` at magnitude ``scale``.

    ``scale`` may be a tensor: its largest magnitude is used (the output's scale, for normwise checks).
    """
    if isinstance(scale, torch.Tensor):
        scale = float(scale.detach().double().abs().max()) if scale.numel() else 0.0
    return ulps * eps(dtype) * float(scale)


def float64_tolerance(n: int, cond: float = 1.0, scale: float = 1.0) -> dict[str, float]:
    """Rule 3: ``rtol = n · κ · eps64`` (the worst-case rounding bound of a length-``n`` accumulation at
    condition ``κ``) and ``atol = rtol · scale`` for elements near zero in an output of magnitude ``scale``."""
    rtol = n * cond * eps(torch.float64)
    return dict(rtol=rtol, atol=rtol * scale)


def describe_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> str:
    actual, expected = actual.detach(), expected.detach()
    diff = (actual.double() - expected.double()).abs()
    worst = int(diff.flatten().argmax()) if diff.numel() else 0
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape)) if diff.numel() else ()
    nan_a, nan_e = int(actual.isnan().sum()), int(expected.isnan().sum())
    return (
        f"max abs err {float(diff.max()) if diff.numel() else 0.0:.3e} at {idx}: "
        f"actual {float(actual.flatten()[worst]) if diff.numel() else 0.0:.6g}, "
        f"expected {float(expected.flatten()[worst]) if diff.numel() else 0.0:.6g}; NaN actual/expected {nan_a}/{nan_e}"
    )


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "", **tol) -> None:
    """``torch.testing.assert_close`` with the dtype's ``TOLERANCES`` (or ``tol``) and a worst-element report.

    For float64 (rule 3) and exact (``atol=rtol=0``, rule 4) comparisons; two working-precision
    computations are compared through :func:`assert_close_to_oracle` instead.
    """
    tol = tol or TOLERANCES[actual.dtype]
    try:
        torch.testing.assert_close(actual, expected.to(actual.dtype), **tol)
    except AssertionError as exc:
        raise AssertionError(f"{name}: {describe_mismatch(actual, expected)}\n{exc}") from None


def assert_close_normwise(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str = "") -> None:
    """‖actual − expected‖∞ ≤ tol · ‖expected‖∞: for comparing algorithms that sum in different orders."""
    err = (actual.double() - expected.double()).abs().max().item()
    ref = expected.double().abs().max().item()
    assert err <= tol * ref, f"{name}: max error {err:.3e} > {tol:g} × max |expected| {ref:.3e}"


def oracle_error(t: torch.Tensor, oracle: torch.Tensor) -> float:
    """‖t − oracle‖∞ in float64 (NaN anywhere in ``t`` where the oracle is finite gives inf)."""
    diff = (t.detach().double() - oracle.detach().double()).abs()
    if diff.numel() == 0:
        return 0.0
    return float("inf") if bool(diff.isnan().any()) else float(diff.max())


def assert_close_to_oracle(
    actual: torch.Tensor, reference: torch.Tensor, oracle: torch.Tensor, name: str = "", *, floor: float,
    factor: float = 2.0,
) -> None:
    """Rule 1: ‖actual − oracle‖∞ ≤ factor · ‖reference − oracle‖∞ + floor.

    ``actual`` is ours in a working precision, ``reference`` the same maths computed another way in the
    same dtype (PyTorch's layers, the reference backend, a peer's module), ``oracle`` the reference
    computed in float64 on the same inputs. ``floor`` is the stated absolute floor near zero (for a
    reference that happens to be exact on these inputs), usually ``ulp_floor(dtype, oracle)``.
    """
    assert actual.shape == oracle.shape == reference.shape, \
        f"{name}: shapes {actual.shape}, {reference.shape}, {oracle.shape}"
    err, base = oracle_error(actual, oracle), oracle_error(reference, oracle)
    assert err <= factor * base + floor, (
        f"{name}: error {err:.3e} > {factor:g} × the reference's {base:.3e} + floor {floor:.3e}; "
        f"{describe_mismatch(actual, oracle)}"
    )


def assert_low_precision_close(
    actual: torch.Tensor, torch_same_dtype: torch.Tensor, oracle: torch.Tensor, name: str = "", factor: float = 2.0,
    floor: float = 1e-6,
) -> None:
    """Rule 1 under its older name: :func:`assert_close_to_oracle` with ``floor`` defaulting to 1e-6."""
    assert_close_to_oracle(actual, torch_same_dtype, oracle, name, floor=floor, factor=factor)


def assert_decreasing_above(errors: Sequence[float], floor: float, name: str = "") -> None:
    """Rule 2: each error is at most the one before while that one is above ``floor``; once an error is
    at or below ``floor``, the later ones stay at or below it (round-off may move them about there)."""
    for i, (a, b) in enumerate(zip(errors, errors[1:], strict=False)):
        assert b <= max(a, floor), \
            f"{name}: error {i + 1} ({b:.3e}) > error {i} ({a:.3e}) above the floor {floor:.3e}: {list(errors)}"
