"""PSNR/SSIM against hand formulas and a loop-based SSIM oracle written from Wang et al.'s definition."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srops.image import psnr, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _levels(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random images already on the 8-bit grid, as float in [0, 1]."""
    return torch.randint(0, 256, shape, generator=gen).to(torch.float64) / 255


def _y255(img: np.ndarray) -> np.ndarray:
    """[3, H, W] 0-255 integers -> BT.601 Y on the 0-255 scale."""
    return 16 + (65.481 * img[0] + 128.553 * img[1] + 24.966 * img[2]) / 255


def _ssim_oracle(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2-D float arrays: Gaussian-weighted moments per 11x11 window, then the mean."""
    t = np.arange(11) - 5.0
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (win * pa).sum(), (win * pb).sum()
            va, vb = (win * (pa - ma) ** 2).sum(), (win * (pb - mb) ** 2).sum()
            cov = (win * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + C1) * (2 * cov + C2) / ((ma**2 + mb**2 + C1) * (va + vb + C2)))
    return float(np.mean(vals))


def test_psnr_hand_formula_on_y() -> None:
    gen = torch.Generator().manual_seed(1)
    sr, hr = _levels((3, 3, 20, 17), gen), _levels((3, 3, 20, 17), gen)
    got = psnr(sr, hr, crop_border=3)
    assert got.shape == (3,) and got.dtype == torch.float64
    for k in range(3):
        a = _y255((sr[k] * 255).round().numpy())[3:-3, 3:-3]
        b = _y255((hr[k] * 255).round().numpy())[3:-3, 3:-3]
        mse = np.mean((a - b) ** 2)
        assert float(got[k]) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)


def test_psnr_constant_offset_closed_form() -> None:
    hr = torch.full((2, 3, 8, 8), 100 / 255, dtype=torch.float64)
    sr = hr + torch.tensor([3.0, 7.0], dtype=torch.float64).reshape(2, 1, 1, 1) / 255
    y = psnr(sr, hr, crop_border=0)  # Y differs by d * 219 / 255
    rgb = psnr(sr, hr, crop_border=0, test_y_channel=False)
    for k, d in enumerate((3.0, 7.0)):
        assert float(y[k]) == pytest.approx(20 * math.log10(255 / (d * 219 / 255)), abs=1e-10)
        assert float(rgb[k]) == pytest.approx(20 * math.log10(255 / d), abs=1e-10)


def test_psnr_identical_is_inf_and_quantisation_applies() -> None:
    hr = _levels((2, 3, 9, 9), torch.Generator().manual_seed(2))
    assert torch.isinf(psnr(hr, hr, 2)).all()
    nudged = hr + 0.4 / 255 * torch.sign(torch.rand_like(hr) - 0.5)  # rounds back to the same levels
    assert torch.isinf(psnr(nudged.clamp(0, 1), hr, 2)).all()
    over = hr.clone()
    over[:, :, 4, 4] = 1.7  # clipped to 255 before scoring
    ref = hr.clone()
    ref[:, :, 4, 4] = 1.0
    assert torch.isinf(psnr(over, ref, 2)).all()


def test_crop_border_removes_border_errors() -> None:
    hr = _levels((1, 3, 12, 10), torch.Generator().manual_seed(3))
    sr = hr.clone()
    sr[..., :2, :] = 1 - sr[..., :2, :]
    sr[..., :, -2:] = 1 - sr[..., :, -2:]
    assert torch.isinf(psnr(sr, hr, 2)).all()
    assert torch.isfinite(psnr(sr, hr, 1)).all()


def test_psnr_batch_equals_per_image() -> None:
    gen = torch.Generator().manual_seed(4)
    sr, hr = _levels((4, 3, 15, 13), gen), _levels((4, 3, 15, 13), gen)
    got = psnr(sr.float(), hr.float(), 2)
    for k in range(4):
        assert float(got[k]) == float(psnr(sr[k:k + 1], hr[k:k + 1], 2)[0])


def test_ssim_matches_loop_oracle_y_and_rgb() -> None:
    gen = torch.Generator().manual_seed(5)
    hr = _levels((2, 3, 19, 17), gen)
    sr = (hr + (torch.rand(hr.shape, generator=gen, dtype=torch.float64) - 0.5) * 0.3).clamp(0, 1)
    got_y = ssim(sr, hr, crop_border=2)
    got_rgb = ssim(sr, hr, crop_border=2, test_y_channel=False)
    for k in range(2):
        a = np.floor(sr[k].numpy() * 255 + 0.5)[:, 2:-2, 2:-2]
        b = np.floor(hr[k].numpy() * 255 + 0.5)[:, 2:-2, 2:-2]
        assert float(got_y[k]) == pytest.approx(_ssim_oracle(_y255(a), _y255(b)), abs=1e-12)
        per_channel = np.mean([_ssim_oracle(a[c], b[c]) for c in range(3)])
        assert float(got_rgb[k]) == pytest.approx(per_channel, abs=1e-12)


def test_ssim_constant_images_closed_form() -> None:
    p, q = 90.0, 140.0
    sr = torch.full((1, 1, 12, 12), p / 255, dtype=torch.float64)
    hr = torch.full((1, 1, 12, 12), q / 255, dtype=torch.float64)
    got = ssim(sr, hr, crop_border=0, test_y_channel=False)
    assert float(got) == pytest.approx((2 * p * q + C1) / (p * p + q * q + C1), abs=1e-12)


def test_ssim_identical_is_one_and_symmetric() -> None:
    gen = torch.Generator().manual_seed(6)
    a, b = _levels((3, 3, 24, 20), gen), _levels((3, 3, 24, 20), gen)
    assert torch.allclose(ssim(a, a, 3), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(ssim(a, b, 3), ssim(b, a, 3), atol=1e-12, rtol=0)
    assert (ssim(a, b, 3) < 0.5).all()


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_errors(metric) -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, torch.rand(1, 3, 16, 15), 0)
    with pytest.raises(ValueError, match="4-D"):
        metric(x[0], x[0], 0)
    with pytest.raises(ValueError, match="leaves"):
        metric(x, x, 8)
    with pytest.raises(ValueError, match="crop_border"):
        metric(x, x, -1)
    with pytest.raises(TypeError, match="crop_border"):
        metric(x, x, 1.0)
    with pytest.raises(TypeError, match="crop_border"):
        metric(x, x, True)
    with pytest.raises(ValueError, match="RGB"):
        metric(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), 0)
    with pytest.raises(TypeError, match="floating"):
        metric(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), x, 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        metric(x.numpy(), x, 0)
    with pytest.raises(TypeError, match="test_y_channel"):
        metric(x, x, 0, test_y_channel="yes")


def test_ssim_needs_an_11x11_window() -> None:
    x = torch.rand(1, 3, 14, 30)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x, 2)
    assert torch.isinf(psnr(x, x, 2)).all()
