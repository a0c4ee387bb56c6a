"""Argument checks shared by every functional.

Messages read ``srops.<op>: '<arg>' must <expectation>, got <actual>``; shape
and value problems raise ``ValueError``, type, dtype and device problems
``TypeError``.
"""
from __future__ import annotations

import math
from typing import Sequence, cast

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_DTYPE_NAMES = "float16, bfloat16, float32 or float64"


def check_tensor(op: str, arg: str, t: object, ndim: int | Sequence[int], layout: str) -> torch.Tensor:
    """Check that ``t`` is a non-empty floating tensor of rank ``ndim`` (an int or a choice of ints)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"srops.{op}: '{arg}' must be a torch.Tensor {layout}, got {type(t).__name__}")
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if t.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"srops.{op}: '{arg}' must be a {want} tensor {layout}, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"srops.{op}: '{arg}' must have dtype {_DTYPE_NAMES}, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"srops.{op}: '{arg}' must be non-empty {layout}, got shape {tuple(t.shape)}")
    return t


def check_same(op: str, **tensors: torch.Tensor) -> None:
    """All tensors on one device and of one dtype (the first one's)."""
    items = list(tensors.items())
    name0, t0 = items[0]
    for name, t in items[1:]:
        if t.device != t0.device:
            raise TypeError(f"srops.{op}: '{name}' must be on {t0.device} like '{name0}', got {t.device}")
        if t.dtype != t0.dtype:
            raise TypeError(f"srops.{op}: '{name}' must have dtype {t0.dtype} like '{name0}', got {t.dtype}")


def check_dim_size(op: str, arg: str, t: torch.Tensor, dim: int, expected: int, what: str) -> None:
    if t.shape[dim] != expected:
        raise ValueError(
            f"srops.{op}: '{arg}' must have {what} = {expected} (dim {dim}), got shape {tuple(t.shape)}"
        )


def check_int(op: str, arg: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """An int (not a bool) ``>= minimum`` and, when given, ``<= maximum``."""
    want = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"srops.{op}: '{arg}' must be {want}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"srops.{op}: '{arg}' must be {want}, got {value}")
    return cast(int, value)  # a SymInt (torch.compile) stands for an int


def check_float(op: str, arg: str, value: object, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite float (an int is accepted); ``positive`` also requires ``> 0``, ``nonnegative`` ``>= 0``.

    Written with comparisons only (no ``math.isfinite``), so that a float that
    ``torch.compile(dynamic=True)`` traces symbolically is checked too (as guards).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"srops.{op}: '{arg}' must be a float, got {type(value).__name__} {value!r}")
    value = value * 1.0  # int -> float; keeps a symbolic value symbolic
    finite = value == value and -math.inf < value < math.inf
    if not finite or (positive and value <= 0) or (nonnegative and value < 0):
        want = "a finite positive float" if positive else "a finite float >= 0" if nonnegative else "a finite float"
        raise ValueError(f"srops.{op}: '{arg}' must be {want}, got {value}")
    return cast(float, value)  # a SymFloat (torch.compile) stands for a float


def check_result(op: str, arg: str, t: object, shape: Sequence[int], layout: str) -> torch.Tensor:
    """Check that the callable ``arg`` returned a tensor of ``shape`` (named ``layout``, e.g. ``[B, C]``)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"srops.{op}: '{arg}' must return a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dim() != len(shape) or any(a != b for a, b in zip(t.shape, shape, strict=True)):
        want = tuple(int(s) for s in shape)
        raise ValueError(f"srops.{op}: '{arg}' must return logits {layout} = {want}, got shape {tuple(t.shape)}")
    return t
