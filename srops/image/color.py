"""RGB <-> YCbCr with MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` coefficients (ITU-R BT.601, studio swing).

One convention throughout ``srops.image``: RGB float tensors in [0, 1],
channels at dim -3 (``[B, 3, H, W]`` or ``[3, H, W]``), and YCbCr returned on
the same [0, 1] scale as MATLAB returns it for double input:

    Y  = (16  +  65.481 R + 128.553 G +  24.966 B) / 255
    Cb = (128 -  37.797 R -  74.203 G + 112.000 B) / 255
    Cr = (128 + 112.000 R -  93.786 G -  18.214 B) / 255

so Y lies in [16/255, 235/255] for R, G, B in [0, 1]. Multiply by 255 for
the 0-255 scale used by PSNR/SSIM (the metrics do this themselves).
"""
from __future__ import annotations

import torch

# Rows: Y, Cb, Cr; columns: R, G, B (inputs in [0, 1], outputs on the 0-255 scale).
_MATRIX = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)
_OFFSET = (16.0, 128.0, 128.0)


def _check(op: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"srops.image.{op}: 'x' must be a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"srops.image.{op}: 'x' must be a 3-D or 4-D tensor [B, 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[-3] != 3:
        raise ValueError(
            f"srops.image.{op}: 'x' must have 3 channels at dim -3 [B, 3, H, W], got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"srops.image.{op}: 'x' must be a floating tensor in [0, 1], got {x.dtype}")
    return x


def _apply(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``out[c] = offset[c] + sum_k matrix[c, k] * x[k]`` over the channel dim -3."""
    m = matrix.to(device=x.device, dtype=x.dtype)
    o = offset.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ck,...khw->...chw", m, x) + o[:, None, None]


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma Y of RGB ``x`` as MATLAB's ``rgb2ycbcr`` computes it (BT.601).

    Args:
        x: RGB float tensor in [0, 1], ``[B, 3, H, W]`` or ``[3, H, W]``.

    Returns:
        ``[B, 1, H, W]`` (or ``[1, H, W]``) tensor, same dtype and device:
        ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``, i.e. on the [0, 1]
        scale (in [16/255, 235/255] for inputs in [0, 1]).
    """
    x = _check("rgb_to_y", x)
    r, g, b = x.narrow(-3, 0, 1), x.narrow(-3, 1, 1), x.narrow(-3, 2, 1)
    m = _MATRIX[0]
    return (16.0 + m[0] * r + m[1] * g + m[2] * b) / 255.0


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` in [0, 1] to YCbCr ``[B, 3, H, W]`` on MATLAB's [0, 1] scale."""
    x = _check("rgb_to_ycbcr", x)
    matrix = torch.tensor(_MATRIX, dtype=torch.float64) / 255.0
    offset = torch.tensor(_OFFSET, dtype=torch.float64) / 255.0
    return _apply(x, matrix, offset)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (MATLAB's ``ycbcr2rgb``): YCbCr on the [0, 1] scale to RGB.

    The result is not clamped: YCbCr triples outside the RGB cube map outside [0, 1].
    """
    x = _check("ycbcr_to_rgb", x)
    inv = torch.linalg.inv(torch.tensor(_MATRIX, dtype=torch.float64))  # maps 0-255 YCbCr minus offset to RGB
    offset = torch.tensor(_OFFSET, dtype=torch.float64)
    matrix = inv * 255.0
    return _apply(x, matrix, -(inv @ offset))
