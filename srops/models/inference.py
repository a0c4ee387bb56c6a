"""Super-resolving whole images: full-image or tiled inference, self-ensemble, precision.

:func:`upscale_tensor` runs a network that maps ``[1, 3, h, w]`` RGB in [0, 1] to ``[1, 3, sh, sw]``
(a :class:`srops.models.objectives.NetIO`-wrapped network) over one image:

* ``tile=None``: the whole image in one forward pass, so image-wide operators (a global non-local
  block, second-order statistics over the whole map) see the whole image, as in training-free
  evaluation.
* ``tile=T, overlap=O``: T×T LR tiles overlapping by at least O pixels, spread evenly over the image.
  Each tile's outer O/4 pixels on a side shared with a neighbour get weight 0 and the next O/2 are
  cross-faded linearly, so a convolutional network whose receptive field reaches at most O/4 LR
  pixels gives exactly the whole-image result, and any network gives seamless output. Memory is
  that of one tile; the output is assembled on the CPU.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def final_output(out):
    """The finest output of a network that may return a pyramid (list/tuple, e.g. LapSRN)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


# the 8 dihedral transforms of [..., H, W] and their inverses (self-ensemble)
def transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    return torch.rot90(x.flip(-1) if flip else x, k, (-2, -1))


def untransform(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(y, -k, (-2, -1))
    return y.flip(-1) if flip else y


ENSEMBLE = [(k, f) for k in range(4) for f in (False, True)]


def ensemble_mean(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  self_ensemble: bool) -> torch.Tensor:
    """``run(x)``; with ``self_ensemble`` the mean over the 8 :data:`ENSEMBLE` transforms of
    ``untransform(run(transform(x)))``, summed in :data:`ENSEMBLE` order."""
    if not self_ensemble:
        return run(x)
    acc: torch.Tensor | None = None
    for k, flip in ENSEMBLE:
        y = untransform(run(transform(x, k, flip)), k, flip)
        acc = y if acc is None else acc + y
    assert acc is not None  # ENSEMBLE is not empty
    return acc / len(ENSEMBLE)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``, neighbours overlapping >= ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _crossfade(n: int, lo: int, hi: int, scale: int) -> torch.Tensor:
    """Weight ramp over SR positions ``0..n-1`` for an overlap ``[lo, hi)`` in LR pixels: 0 before
    ``lo + o/4``, 1 after ``hi - o/4``, linear between (``o = hi - lo``)."""
    o = (hi - lo) * scale
    x = torch.arange(n, dtype=torch.float64) + 0.5
    return ((x - lo * scale - o / 4) / (o / 2)).clamp(0, 1)


def axis_weights(length: int, starts: list[int], tile: int, scale: int) -> list[torch.Tensor]:
    """Per tile, its 1-D blend weight over its own SR extent (``tile_len * scale`` values)."""
    ends = [min(s + tile, length) for s in starts]
    out = []
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        w = torch.ones((e - s) * scale, dtype=torch.float64)
        pos = slice(s * scale, e * scale)
        if i > 0 and ends[i - 1] > s:
            w *= _crossfade(length * scale, s, ends[i - 1], scale)[pos]
        if i + 1 < len(starts) and e > starts[i + 1]:
            w *= 1 - _crossfade(length * scale, starts[i + 1], e, scale)[pos]
        out.append(w)
    return out


def check_tiling(tile: int | None, overlap: int) -> None:
    """ValueError unless ``tile`` is None or an int >= 4 and 0 <= ``overlap`` < tile / 2."""
    if tile is None:
        return
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 4:
        raise ValueError(f"srops.models.upscale: 'tile' must be None or an int >= 4 (LR pixels), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tile / 2:
        raise ValueError(f"srops.models.upscale: 'tile_overlap' must be an int in [0, tile/2) = [0, {tile / 2:g}), "
                         f"got {overlap!r}")


def _run(model: nn.Module, x: torch.Tensor, scale: int) -> torch.Tensor:
    y = final_output(model(x))
    want = (x.shape[-2] * scale, x.shape[-1] * scale)
    if tuple(y.shape[-2:]) != want or y.shape[1] != 3:
        raise ValueError(f"srops.models.upscale: the network turned a {tuple(x.shape)} input into {tuple(y.shape)}, "
                         f"expected [1, 3, {want[0]}, {want[1]}] for ×{scale}")
    return y


def _tiled(model: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int,
           step: Callable[[], None]) -> torch.Tensor:
    h, w = x.shape[-2:]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    wy, wx = axis_weights(h, ys, tile, scale), axis_weights(w, xs, tile, scale)
    out = torch.zeros(1, 3, h * scale, w * scale, dtype=torch.float32)
    for y0, wyi in zip(ys, wy, strict=True):
        for x0, wxi in zip(xs, wx, strict=True):
            part = _run(model, x[..., y0:y0 + tile, x0:x0 + tile], scale).float().cpu()
            weight = (wyi[:, None] * wxi[None, :]).to(torch.float32)
            out[..., y0 * scale:y0 * scale + part.shape[-2], x0 * scale:x0 * scale + part.shape[-1]] += part * weight
            step()
    norm_y = torch.zeros(h * scale, dtype=torch.float64)
    norm_x = torch.zeros(w * scale, dtype=torch.float64)
    for y0, wyi in zip(ys, wy, strict=True):
        norm_y[y0 * scale:y0 * scale + wyi.numel()] += wyi
    for x0, wxi in zip(xs, wx, strict=True):
        norm_x[x0 * scale:x0 * scale + wxi.numel()] += wxi
    norm = (norm_y[:, None] * norm_x[None, :]).to(torch.float32)
    if not bool((norm > 0).all()):  # cannot happen for overlap < tile / 2; guards the blend maths
        raise RuntimeError("srops.models.upscale: tile blend weights leave pixels uncovered")
    return out.div_(norm)


def count_passes(h: int, w: int, tile: int | None, overlap: int, self_ensemble: bool) -> int:
    """Forward passes :func:`upscale_tensor` makes for an ``h``×``w`` image (for progress bars)."""
    per: float = 1
    if tile is not None:
        per = len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))
        if self_ensemble and h != w:  # the rotated transforms tile the transposed image
            per = (per + len(tile_starts(w, tile, overlap)) * len(tile_starts(h, tile, overlap))) / 2
    return int(per * (len(ENSEMBLE) if self_ensemble else 1))


@torch.inference_mode()
def upscale_tensor(model: nn.Module, lr: torch.Tensor, scale: int, tile: int | None = None, overlap: int = 16,
                   self_ensemble: bool = False, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, step: Callable[[], None] | None = None) -> torch.Tensor:
    """Super-resolve one image.

    Args:
        model: network on ``device`` in ``dtype``, eval mode, RGB [0, 1] in and out.
        lr: ``[1, 3, h, w]`` float in [0, 1], any device.
        scale: the network's integer factor s.
        tile, overlap: tiled inference (see the module docstring); ``tile=None`` is the whole image.
        self_ensemble: average the 8 flips/rotations (×8 cost).
        device, dtype: where and in which precision the network runs.
        step: called after every forward pass (progress reporting).

    Returns:
        ``[1, 3, s·h, s·w]`` float32 on the CPU, unclamped.
    """
    check_tiling(tile, overlap)
    if lr.dim() != 4 or lr.shape[:2] != (1, 3):
        raise ValueError(f"srops.models.upscale: 'lr' must be [1, 3, h, w], got {tuple(lr.shape)}")
    step = step or (lambda: None)
    x = lr.to(device=device, dtype=dtype)

    def one_pass(xt: torch.Tensor) -> torch.Tensor:
        if tile is not None:
            return _tiled(model, xt, scale, tile, overlap, step)
        y = _run(model, xt, scale).float().cpu()
        step()
        return y

    return ensemble_mean(one_pass, x, self_ensemble)


# the CPU allocator's failure is a plain RuntimeError (c10's DefaultCPUAllocator), not torch.OutOfMemoryError
_CPU_ALLOCATOR_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure: ``torch.OutOfMemoryError`` (CUDA), the CPU allocator's RuntimeError,
    or Python's/numpy's MemoryError. Any other RuntimeError is not one."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return type(exc) is RuntimeError and any(m in str(exc) for m in _CPU_ALLOCATOR_MESSAGES)


def run_network(model: nn.Module, lr: torch.Tensor, scale: int, tile: int | None, overlap: int,
                self_ensemble: bool, device: torch.device, dtype: torch.dtype,
                step: Callable[[], None] | None = None, note: Callable[[str], None] | None = None) -> torch.Tensor:
    """:func:`upscale_tensor`, retried with ever smaller tiles (not below 64 LR pixels) when memory runs out.

    ``note`` receives one line per retry. The last allocation failure propagates when even the smallest
    tile does not fit (test it with :func:`is_out_of_memory`).
    """
    h, w = lr.shape[-2:]
    while True:
        try:
            return upscale_tensor(model, lr, scale, tile=tile, overlap=overlap, self_ensemble=self_ensemble,
                                  device=device, dtype=dtype, step=step)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            smaller = max(min(512, max(h, w) // 2) if tile is None else tile // 2, 64, 2 * overlap + 1)
            if tile is not None and smaller >= tile:
                raise
        tile = smaller  # outside the handler: the failed pass's tensors are released before the retry
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
        if note is not None:
            note(f"the image does not fit in {device} memory at this size; retrying with tiles of {tile}")


@torch.inference_mode()
def smallest_input(model: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   largest: int = 64) -> int | None:
    """The smallest n for which ``model`` accepts an n×n image (ValueError below it), or None up to ``largest``.

    Networks with pooling or region-wise attention (AMMS: 4×4 LR pixels) reject small images; this finds
    the bound by trying sizes, to explain such a failure in the user's terms.
    """
    for n in range(1, largest + 1):
        try:
            model(torch.zeros(1, 3, n, n, device=device, dtype=dtype))
            return n
        except ValueError:
            continue
    return None
