"""PSNR and SSIM by the standard SR evaluation protocol (MATLAB ``Evaluate_PSNR_SSIM.m`` style).

For each image of the batch:

1. both images are quantised to 8-bit levels, ``round(clip(x, 0, 1) * 255)``
   (MATLAB's uint8 conversion; halves round up);
2. ``crop_border`` pixels are shaved from each of the four sides;
3. with ``test_y_channel=True`` the Y channel of the quantised RGB is taken
   (MATLAB ``rgb2ycbcr``, BT.601, on the 0-255 scale, not rounded);
4. everything from here on is float64:
   PSNR = ``10 log10(255^2 / MSE)``, and SSIM is Wang et al.'s
   ``ssim_index``: 11x11 Gaussian window (sigma 1.5), 'valid' filtering,
   ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, mean of the SSIM map.
   Without the Y channel, PSNR uses the MSE over all channels and SSIM is
   the mean of the per-channel SSIMs.

Inputs follow the package convention (RGB float in [0, 1], ``[B, C, H, W]``);
results are float64 tensors ``[B]`` on the inputs' device. PSNR of two images
that are identical after quantisation is ``inf``.
"""
from __future__ import annotations

import torch

from srops.image.color import rgb_to_y

_PEAK = 255.0
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5


def _prepare(op: str, sr: object, hr: object, crop_border: object, test_y_channel: object,
             min_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, quantise to 0-255 float64, shave borders, take Y: two ``[B, C', H', W']`` tensors."""
    for name, t in (("sr", sr), ("hr", hr)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"srops.image.{op}: '{name}' must be a torch.Tensor [B, C, H, W], got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"srops.image.{op}: '{name}' must be a 4-D tensor [B, C, H, W], got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"srops.image.{op}: '{name}' must be a floating tensor in [0, 1], got {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"srops.image.{op}: '{name}' must be non-empty [B, C, H, W], got shape {tuple(t.shape)}")
    assert isinstance(sr, torch.Tensor) and isinstance(hr, torch.Tensor)
    if sr.shape != hr.shape:
        raise ValueError(
            f"srops.image.{op}: 'sr' and 'hr' must have the same shape [B, C, H, W], "
            f"got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )
    if sr.device != hr.device:
        raise TypeError(f"srops.image.{op}: 'hr' must be on {sr.device} like 'sr', got {hr.device}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int):
        raise TypeError(
            f"srops.image.{op}: 'crop_border' must be an int >= 0, got {type(crop_border).__name__} {crop_border!r}"
        )
    if crop_border < 0:
        raise ValueError(f"srops.image.{op}: 'crop_border' must be an int >= 0, got {crop_border}")
    if not isinstance(test_y_channel, bool):
        raise TypeError(f"srops.image.{op}: 'test_y_channel' must be a bool, got {type(test_y_channel).__name__}")
    h, w = int(sr.shape[-2]), int(sr.shape[-1])
    if h - 2 * crop_border < min_size or w - 2 * crop_border < min_size:
        raise ValueError(
            f"srops.image.{op}: 'crop_border' = {crop_border} leaves {h - 2 * crop_border}x{w - 2 * crop_border} "
            f"pixels of the {h}x{w} images; must leave at least {min_size}x{min_size}"
        )
    if test_y_channel and sr.shape[1] != 3:
        raise ValueError(
            f"srops.image.{op}: 'sr' must be RGB [B, 3, H, W] when test_y_channel=True, got shape {tuple(sr.shape)}"
        )
    out = []
    for t in (sr, hr):
        q = torch.floor(t.detach().to(torch.float64).clamp(0.0, 1.0) * _PEAK + 0.5)
        if crop_border:
            q = q[..., crop_border:h - crop_border, crop_border:w - crop_border]
        if test_y_channel:
            q = rgb_to_y(q / _PEAK) * _PEAK
        out.append(q)
    return out[0], out[1]


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, test_y_channel: bool = True) -> torch.Tensor:
    """Per-image PSNR in dB by the standard SR protocol (see the module docstring).

    Args:
        sr: restored images, float ``[B, C, H, W]``, RGB in [0, 1].
        hr: ground truth, same shape and device as ``sr``.
        crop_border: pixels shaved from each side before scoring (the SR
            convention is ``crop_border = scale``).
        test_y_channel: score the BT.601 Y channel (needs C = 3); otherwise
            all channels.

    Returns:
        float64 ``[B]``; ``inf`` where the quantised images are identical.
    """
    a, b = _prepare("psnr", sr, hr, crop_border, test_y_channel, 1)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(_PEAK ** 2 / mse)


def _gaussian_1d(device: torch.device) -> torch.Tensor:
    """1-D factor of MATLAB ``fspecial('gaussian', 11, 1.5)``: ``[11]`` float64 summing to 1.

    The 2-D window is the outer product of this vector with itself (the
    Gaussian is separable and its normalisation factors), so 'valid'
    filtering with it is two 1-D passes.
    """
    r = (_SSIM_SIZE - 1) / 2
    t = torch.arange(_SSIM_SIZE, dtype=torch.float64, device=device) - r
    g = torch.exp(-(t * t) / (2 * _SSIM_SIGMA ** 2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """'valid' 2-D filtering of ``[..., H, W]`` with the separable window ``outer(g, g)``."""
    k = g.numel()
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = g[0] * x[..., 0:h, :]
    for i in range(1, k):
        rows = rows + g[i] * x[..., i:i + h, :]
    out = g[0] * rows[..., :, 0:w]
    for j in range(1, k):
        out = out + g[j] * rows[..., :, j:j + w]
    return out


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, test_y_channel: bool = True) -> torch.Tensor:
    """Per-image SSIM by the standard SR protocol, MATLAB ``ssim_index`` style (see the module docstring).

    Args:
        sr: restored images, float ``[B, C, H, W]``, RGB in [0, 1].
        hr: ground truth, same shape and device as ``sr``.
        crop_border: pixels shaved from each side; at least 11x11 must remain.
        test_y_channel: score the BT.601 Y channel (needs C = 3); otherwise
            the mean of the per-channel SSIMs.

    Returns:
        float64 ``[B]``; 1 for identical images.
    """
    a, b = _prepare("ssim", sr, hr, crop_border, test_y_channel, _SSIM_SIZE)
    g = _gaussian_1d(a.device)
    c1 = (0.01 * _PEAK) ** 2
    c2 = (0.03 * _PEAK) ** 2
    mu_a, mu_b, e_aa, e_bb, e_ab = _filter_valid(torch.stack([a, b, a * a, b * b, a * b]), g)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a, var_b, cov = e_aa - mu_aa, e_bb - mu_bb, e_ab - mu_ab
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(2).mean(dim=2).mean(dim=1)
