"""Test helpers shipped with the package: tolerances, comparison with a worst-element report.

Tolerances follow the project's rule: float32/float64 use the fixed table;
for float16/bfloat16 the backend's error against a float32 (or float64)
oracle must be at most ``factor`` (2) times PyTorch's own same-dtype error.
"""
from __future__ import annotations

import torch

TOLERANCES = {
    torch.float64: dict(atol=1e-10, rtol=1e-8),
    torch.float32: dict(atol=1e-5, rtol=1e-4),
    torch.float16: dict(atol=1e-2, rtol=1e-2),
    torch.bfloat16: dict(atol=5e-2, rtol=5e-2),
}


def describe_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> str:
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
    """``torch.testing.assert_close`` with the dtype's default tolerances and a worst-element report."""
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


def assert_low_precision_close(
    actual: torch.Tensor, torch_same_dtype: torch.Tensor, oracle: torch.Tensor, name: str = "", factor: float = 2.0,
    floor: float = 1e-6,
) -> None:
    """flash-attention's rule: ‖actual − oracle‖∞ ≤ factor · ‖torch_same_dtype − oracle‖∞ (+ floor)."""
    err = (actual.double() - oracle.double()).abs().max().item()
    base = (torch_same_dtype.double() - oracle.double()).abs().max().item()
    assert err <= factor * base + floor, f"{name}: error {err:.3e} > {factor} × PyTorch's {base:.3e}"


def cuda_available() -> bool:
    return torch.cuda.is_available()
