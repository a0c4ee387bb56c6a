"""MATLAB-exact bicubic ``imresize`` for batched PyTorch tensors.

Reproduces MATLAB's ``imresize(I, scale, 'bicubic')`` and
``imresize(I, [rows cols], 'bicubic')`` on double input:

* cubic convolution kernel with ``a = -0.5`` (Keys), support ``[-2, 2]``;
* when shrinking (scale < 1) with antialiasing on, the kernel is stretched to
  ``h(x) = s * cubic(s * x)`` and its support widened to ``4 / s``;
* MATLAB's sample positions ``u = x / s + 0.5 * (1 - 1 / s)`` (1-based ``x``),
  ``left = floor(u - width / 2)``, ``ceil(width) + 2`` taps per output sample,
  each row of weights normalised to sum to 1, columns that are all zero dropped;
* symmetric (mirror, edge sample repeated) boundary handling: out-of-range
  tap indices are folded back with ``[1..n, n..1]`` periodically;
* separable: one pass per spatial dimension, the dimension with the smaller
  scale first (MATLAB sorts the scales stably, so rows first on a tie).

An integer factor ``s`` (upscaling, or 1) takes a shorter path with the same
maths: output ``o = s * k + p`` sits at input position ``k + (p + 0.5) / s -
0.5``, so its weights depend on the phase ``p`` alone and span the five inputs
``k - 2 .. k + 2`` (one of them, or two, with weight 0). The pass mirror-pads
the input by two samples per side and sums five shifted slices times
per-phase weights, interleaving the ``s`` phases by a reshape. It holds no
table whose size depends on the input's, so ``torch.export`` keeps H and W
dynamic. Other factors compute the weights once per (length, scale) in float64
on the CPU; that resampling is a sum of ``index_select`` terms. Both run on any
device and are differentiable with respect to the input.

Convention: images are RGB (or any channels) float tensors in [0, 1] laid out
``[B, C, H, W]`` (``[C, H, W]`` and ``[H, W]`` work too; only the last two
dimensions are resized). The output is **neither clamped nor quantised**:
bicubic overshoot leaves values slightly outside [0, 1]. MATLAB rounds and
clips when its input is ``uint8``; to reproduce that, pass the result through
:func:`quantize` (``round(clip(x, 0, 1) * 255) / 255``), as the standard SR
evaluation protocol does for the LR images.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch

_OP = "image.imresize"
_CUBIC_WIDTH = 4.0


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = x.abs()
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1).to(x.dtype)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2)).to(x.dtype)
    return near + far


@functools.lru_cache(maxsize=128)
def _contributions_cached(in_length: int, out_length: int, scale: float, antialias: bool
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    width = _CUBIC_WIDTH
    kernel: Callable[[torch.Tensor], torch.Tensor]
    if scale < 1 and antialias:
        def _widened(t: torch.Tensor) -> torch.Tensor:
            return scale * _cubic(scale * t)
        kernel = _widened
        width = width / scale
    else:
        kernel = _cubic
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror the 1-based indices into [1, in_length]: aux = [1..n, n..1], periodic.
    aux = torch.cat([torch.arange(1, in_length + 1), torch.arange(in_length, 0, -1)])
    idx = aux[torch.remainder(indices.long() - 1, 2 * in_length)] - 1
    keep = (weights != 0).any(dim=0)
    return weights[:, keep].contiguous(), idx[:, keep].contiguous()


def contributions(in_length: int, out_length: int, scale: float, antialias: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's per-dimension resampling weights and source indices.

    Args:
        in_length: input length along the dimension.
        out_length: output length along the dimension.
        scale: ``out / in`` scale factor used for the sample positions
            (MATLAB uses the requested factor, not ``out_length / in_length``).
        antialias: widen the kernel by ``1 / scale`` when ``scale < 1``.

    Returns:
        ``(weights, indices)``: float64 ``[out_length, P]`` weights, each row
        summing to 1, and int64 ``[out_length, P]`` 0-based source indices in
        ``[0, in_length)`` (mirrored at the borders). Fresh CPU tensors.
    """
    w, i = _contributions_cached(int(in_length), int(out_length), float(scale), bool(antialias))
    return w.clone(), i.clone()


def output_size(in_size: Sequence[int], scale: Sequence[float]) -> tuple[int, int]:
    """MATLAB's output size for a scale factor: ``ceil(scale * in)`` per dimension."""
    return tuple(int(math.ceil(s * n)) for s, n in zip(scale, in_size, strict=True))  # type: ignore[return-value]


def _cubic_scalar(t: float) -> float:
    """:func:`_cubic` on one Python float, with the same operations in the same order."""
    absx = abs(t)
    absx2 = absx * absx
    absx3 = absx2 * absx
    if absx <= 1:
        return 1.5 * absx3 - 2.5 * absx2 + 1.0
    if absx <= 2:
        return -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    return 0.0


@functools.lru_cache(maxsize=32)
def _phase_weights(scale: int) -> tuple[tuple[float, ...], ...]:
    """``[scale][5]`` float64 weights: row ``p`` weighs inputs ``k - 2 .. k + 2`` for output ``scale * k + p``.

    Plain Python floats, so that a trace (torch.export) never caches a tensor of its own.
    """
    rows = []
    for p in range(scale):
        offset = (p + 0.5) / scale - 0.5  # in (-0.5, 0.5)
        w = [_cubic_scalar(offset - d) for d in range(-2, 3)]
        total = sum(w)
        rows.append(tuple(v / total for v in w))
    return tuple(rows)


def _slice(x: torch.Tensor, dim: int, start: int | None, stop: int | None) -> torch.Tensor:
    return x[..., start:stop, :] if dim == -2 else x[..., start:stop]


def _upscale_dim(x: torch.Tensor, dim: int, scale: int) -> torch.Tensor:
    """Upscale ``x`` along ``dim`` (-2 or -1) by the integer ``scale`` >= 2 (MATLAB's weights and borders)."""
    w = torch.tensor(_phase_weights(scale), dtype=x.dtype, device=x.device)  # [scale, 5], rounded once
    # Mirror by two samples, the edge repeated: [x1, x0 | x0 .. x(n-1) | x(n-1), x(n-2)]. Going through the
    # edge-replicated [x0 | x | x(n-1)] makes a 1-sample input come out as five copies (MATLAB's fold).
    edged = torch.cat([_slice(x, dim, 0, 1), x, _slice(x, dim, -1, None)], dim)
    padded = torch.cat([_slice(edged, dim, 2, 3), edged, _slice(edged, dim, -3, -2)], dim)
    phase_shape = (scale, 1) if dim == -2 else (scale,)
    out = None
    for t in range(5):  # input offset t - 2, ascending: the order the index tables sum in
        tap = _slice(padded, dim, t, t - 4 if t < 4 else None).unsqueeze(dim)  # a phase axis of 1 after dim
        term = tap * w[:, t].reshape(phase_shape)
        out = term if out is None else out + term
    assert out is not None
    return out.flatten(-3, -2) if dim == -2 else out.flatten(-2)


def _resize_dim(x: torch.Tensor, dim: int, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` along ``dim`` (-2 or -1): ``out[o] = sum_p w[o, p] * x[idx[o, p]]``."""
    w = weights.to(device=x.device, dtype=x.dtype)
    idx = indices.to(device=x.device)
    shape = [1] * x.dim()
    shape[dim] = w.shape[0]
    out = None
    for p in range(w.shape[1]):
        term = x.index_select(dim, idx[:, p]) * w[:, p].reshape(shape)
        out = term if out is None else out + term
    assert out is not None
    return out


def _parse_pair(value: object, arg: str, kind: type) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        items = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        items = tuple(value)
    else:
        raise TypeError(f"srops.{_OP}: '{arg}' must be a number or a pair (H, W), got {value!r}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"srops.{_OP}: '{arg}' must be a number or a pair (H, W), got {value!r}")
        if kind is int and (not float(v).is_integer() or v < 1):
            raise ValueError(f"srops.{_OP}: '{arg}' must hold integers >= 1, got {value!r}")
        if kind is float and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"srops.{_OP}: '{arg}' must hold finite positive numbers, got {value!r}")
    return tuple(kind(v) for v in items)


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: int | Sequence[int] | None = None,
    *,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize(..., 'bicubic')`` on double input.

    Args:
        x: float tensor ``[B, C, H, W]`` (or ``[C, H, W]``, ``[H, W]``), RGB in
            [0, 1] by the project's convention; any device. float32 and float64
            are computed in their own dtype; float16/bfloat16 are computed in
            float32 and cast back.
        scale: scale factor, one number or ``(scale_h, scale_w)``; the output
            size is ``ceil(scale * in)`` per dimension (MATLAB's rule).
        size: output size ``(H_out, W_out)`` (or one int for both); the
            scales are then ``H_out / H`` and ``W_out / W``.
            Give exactly one of ``scale`` and ``size``.
        antialias: MATLAB's ``'Antialiasing'`` option (on by default); it only
            matters when shrinking.

    Returns:
        ``[..., H_out, W_out]`` tensor of ``x``'s dtype and device, not clamped
        and not quantised (see :func:`quantize`). Differentiable in ``x``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"srops.{_OP}: 'x' must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.dim() not in (2, 3, 4):
        raise ValueError(f"srops.{_OP}: 'x' must be a 2-D, 3-D or 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"srops.{_OP}: 'x' must be a floating tensor in [0, 1] (convert uint8 with x / 255), got {x.dtype}"
        )
    if x.numel() == 0:
        raise ValueError(f"srops.{_OP}: 'x' must be non-empty [B, C, H, W], got shape {tuple(x.shape)}")
    if not isinstance(antialias, bool):
        raise TypeError(f"srops.{_OP}: 'antialias' must be a bool, got {type(antialias).__name__}")
    if (scale is None) == (size is None):
        raise ValueError(f"srops.{_OP}: give exactly one of 'scale' and 'size', got scale={scale!r}, size={size!r}")
    out_size: tuple[int, int] | None = None
    if scale is not None:
        scales = _parse_pair(scale, "scale", float)
    else:
        out_size = _parse_pair(size, "size", int)
        scales = (out_size[0] / int(x.shape[-2]), out_size[1] / int(x.shape[-1]))  # a fixed size: Python ints

    orig_dtype = x.dtype
    if orig_dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    # MATLAB: [~, order] = sort(scale), stable, so rows first on a tie.
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    out = x
    for d in order:
        if scales[d].is_integer():  # an integer factor: output = scale * input along d, phase weights
            if scales[d] != 1.0:  # 1: the identity
                out = _upscale_dim(out, d - 2, int(scales[d]))
            continue
        n_in = int(x.shape[d - 2])  # only here: sizes become Python ints (fixed under torch.export)
        n_out = out_size[d] if out_size is not None else output_size((n_in,), (scales[d],))[0]
        w, i = _contributions_cached(n_in, n_out, scales[d], antialias)
        out = _resize_dim(out, d - 2, w, i)
    if out is x:
        out = x.clone()
    return out.to(orig_dtype)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels like MATLAB's uint8 conversion: ``round(clip(x, 0, 1) * 255) / 255``.

    Halves round away from zero (MATLAB's rule; all values are non-negative
    here, so ``floor(v + 0.5)``). Same dtype and shape as ``x``; the gradient
    is zero almost everywhere, so use it for data preparation and evaluation,
    not inside a loss.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"srops.image.quantize: 'x' must be a floating torch.Tensor, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0
