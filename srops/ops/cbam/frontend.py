"""CBAM functionals: checks, backend registration, dispatch.

The MLP and the spatial convolution (with their optional BatchNorms) are passed
as callables, usually the owning module's layers; the fused backends run the
tensor-sized passes as kernels and call these on the small pooled tensors.

Backends: ``reference`` (pure PyTorch) and the fused ``cpu`` (C++) and ``cuda``
(CUDA C++) kernels of ``srops.ops.cbam.ext_impl``: three reads of x (channel
pooling, channel-wise pooling of x·c without writing it, x·c·s) and one write.
Backward in eager mode: the gate gradients (read grad and x; read x) and then
x's whole gradient in one pass (read grad, write dx), so four reads and one
write; under ``torch.compile`` one registered backward op per pass, whose
x-gradients autograd adds. Saved for backward: x, c, s and int64 argmax indices
([B, C], [B, H, W]).
Default order: ("cpu", "reference") for CPU tensors, ("cuda", "reference") for
CUDA tensors. All four float dtypes; float16 and bfloat16 are computed in
float32 inside the kernels, with y = x·c rounded to the dtype as the reference
rounds it. Ties in a max pooling send the gradient wholly to the first maximal
element (lowest index), as the reference does on CPU (``torch.max(dim)``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from srops import _backend, _ext
from srops._checks import check_tensor
from srops.ops.cbam.reference import (
    cbam_ref,
    channel_attention_ref,
    channel_gate_ref,
    spatial_attention_ref,
    spatial_gate_ref,
)

Fn = Callable[[torch.Tensor], torch.Tensor]
POOL_TYPES = ("avg", "max")
_ALL = ("cpu", "cuda")

_REFERENCE_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "channel_gate": channel_gate_ref, "spatial_gate": spatial_gate_ref, "channel_attention": channel_attention_ref,
    "spatial_attention": spatial_attention_ref, "cbam": cbam_ref,
}
for _op, _fn in _REFERENCE_FNS.items():
    _backend.register(_backend.Backend(_op, "reference", _fn, devices=_ALL))

# every compiled CBAM pass (csrc/cbam), as the extension declares them: the fused backends need all of them
_FUSED_OPS = _ext.ops_with_prefix("cbam_")

if _ext.HAS_EXT:
    from srops.ops.cbam.ext_impl import FUSED_FNS as _FUSED_FNS
else:
    _FUSED_FNS = {}

for _op in _REFERENCE_FNS:
    _ext_fn = _FUSED_FNS.get(_op, _backend.not_built)
    for _name, _key in (("cpu", "CPU"), ("cuda", "CUDA")):
        _backend.register(_backend.Backend(_op, _name, _ext_fn, devices=(_name,),
                                           available=_ext.kernel_availability(_FUSED_OPS, _key)))
    _backend.set_order(_op, "cpu", ("cpu", "reference"))
    _backend.set_order(_op, "cuda", ("cuda", "reference"))


def check_pool(op: str, pool: Sequence[str]) -> tuple[str, ...]:
    pool = (pool,) if isinstance(pool, str) else tuple(pool)
    if not pool or len(set(pool)) != len(pool) or any(p not in POOL_TYPES for p in pool):
        raise ValueError(f"srops.{op}: 'pool' must be a non-empty subset of {POOL_TYPES} without repeats, got {pool!r}")
    return pool


def _check_x(op: str, x: torch.Tensor) -> None:
    check_tensor(op, "x", x, 4, "[B, C, H, W]")


def _check_fn(op: str, arg: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"srops.{op}: '{arg}' must be a callable (module or function), got {type(fn).__name__}")


def channel_gate(x: torch.Tensor, mlp: Fn, pool: Sequence[str] = POOL_TYPES,
                 backend: str | None = None) -> torch.Tensor:
    """CBAM channel gate c = σ(Σ_p mlp(pool_p(x))) ``[B, C, 1, 1]`` for x ``[B, C, H, W]``.

    ``mlp`` maps ``[B, C]`` to ``[B, C]`` logits and is applied to each pooled vector separately.
    """
    _check_x("channel_gate", x)
    _check_fn("channel_gate", "mlp", mlp)
    pool = check_pool("channel_gate", pool)
    return _backend.select("channel_gate", (x,), backend).fn(x, mlp, pool)


def spatial_gate(x: torch.Tensor, conv: Fn, backend: str | None = None) -> torch.Tensor:
    """CBAM spatial gate s = σ(conv(cat[max_c x, mean_c x])) ``[B, 1, H, W]``.

    ``conv`` maps ``[B, 2, H, W]`` to ``[B, 1, H, W]`` logits (7×7 conv, optional BatchNorm).
    """
    _check_x("spatial_gate", x)
    _check_fn("spatial_gate", "conv", conv)
    return _backend.select("spatial_gate", (x,), backend).fn(x, conv)


def channel_attention(
    x: torch.Tensor, mlp: Fn, pool: Sequence[str] = POOL_TYPES, backend: str | None = None
) -> torch.Tensor:
    """x · channel_gate(x): CBAM's channel attention; ``pool=("avg",)`` is RCAN's."""
    _check_x("channel_attention", x)
    _check_fn("channel_attention", "mlp", mlp)
    pool = check_pool("channel_attention", pool)
    return _backend.select("channel_attention", (x,), backend).fn(x, mlp, pool)


def spatial_attention(x: torch.Tensor, conv: Fn, backend: str | None = None) -> torch.Tensor:
    """x · spatial_gate(x)."""
    _check_x("spatial_attention", x)
    _check_fn("spatial_attention", "conv", conv)
    return _backend.select("spatial_attention", (x,), backend).fn(x, conv)


def cbam(
    x: torch.Tensor, mlp: Fn, conv: Fn, pool: Sequence[str] = POOL_TYPES, backend: str | None = None
) -> torch.Tensor:
    """CBAM: y = x·c, then y·spatial_gate(y), for x ``[B, C, H, W]``; returns ``[B, C, H, W]``."""
    _check_x("cbam", x)
    _check_fn("cbam", "mlp", mlp)
    _check_fn("cbam", "conv", conv)
    pool = check_pool("cbam", pool)
    return _backend.select("cbam", (x,), backend).fn(x, mlp, conv, pool)
