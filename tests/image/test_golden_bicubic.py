"""Golden check of the whole protocol against the published bicubic baselines.

HR -> modcrop(scale) -> LR = quantize(imresize(HR, 1 / scale)) -> SR = bicubic network (imresize x scale)
-> PSNR/SSIM on Y with crop_border = scale; the set averages must lie within 0.05 dB and 0.002 SSIM
of the figures published for MATLAB bicubic (SRCNN/VDSR-era tables).

A second check reproduces SRCNN's own Y-only procedure (Y rounded to 8 bits, LR kept in double,
SR rounded), whose Set5 averages are the published PSNRs themselves; it pins imresize to 0.01 dB.

Set5 ships with the repository (data/Set5). BSD100 is read from $SROPS_DATASETS/BSD100
(default ../shared/datasets relative to the repository root) and is skipped when absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import srops.models
from srops.image import imresize, load_image, modcrop, psnr, quantize, rgb_to_y, ssim

ROOT = Path(__file__).resolve().parents[2]
SET5 = ROOT / "data" / "Set5"
BSD100 = Path(os.environ.get("SROPS_DATASETS") or ROOT / ".." / "shared" / "datasets") / "BSD100"

PUBLISHED_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
PUBLISHED_BSD100 = {2: (29.56, 0.8431), 3: (27.21, 0.7382), 4: (25.96, 0.6675)}
PSNR_TOL, SSIM_TOL = 0.05, 0.002


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))


def _protocol_scores(files: list[Path], scale: int, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
    net = srops.models.build("bicubic", scale=scale)
    psnrs, ssims = [], []
    for f in files:
        hr = modcrop(load_image(f, dtype=dtype), scale)
        lr = quantize(imresize(hr, 1 / scale))
        with torch.no_grad():
            sr = net(lr)
        assert sr.shape == hr.shape
        psnrs.append(float(psnr(sr, hr, crop_border=scale)))
        ssims.append(float(ssim(sr, hr, crop_border=scale)))
    return sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)


def _check(name: str, scale: int, got: tuple[float, float], published: tuple[float, float]) -> None:
    msg = f"{name} x{scale}: got {got[0]:.4f} dB / {got[1]:.4f}, published {published[0]} / {published[1]}"
    assert abs(got[0] - published[0]) <= PSNR_TOL, msg
    assert abs(got[1] - published[1]) <= SSIM_TOL, msg


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_matches_published(scale: int) -> None:
    files = _images(SET5)
    assert len(files) == 5, f"expected the 5 Set5 images in {SET5}"
    _check("Set5", scale, _protocol_scores(files, scale), PUBLISHED_SET5[scale])


def test_set5_float32_pipeline_agrees_with_float64() -> None:
    files = _images(SET5)
    p64, s64 = _protocol_scores(files, 4, torch.float64)
    p32, s32 = _protocol_scores(files, 4, torch.float32)
    assert abs(p32 - p64) < 0.005 and abs(s32 - s64) < 5e-5, (p32, p64, s32, s64)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_srcnn_y_only_procedure_reproduces_published_psnr(scale: int) -> None:
    values = []
    for f in _images(SET5):
        y = quantize(rgb_to_y(modcrop(load_image(f, dtype=torch.float64), scale)))  # uint8 Y, as MATLAB on uint8
        sr = imresize(imresize(y, 1 / scale), scale)  # LR stays double in that procedure
        values.append(float(psnr(sr, y, crop_border=scale, test_y_channel=False)))
    mean = sum(values) / len(values)
    assert abs(mean - PUBLISHED_SET5[scale][0]) <= 0.01, f"x{scale}: {mean:.4f} dB vs {PUBLISHED_SET5[scale][0]}"


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bsd100_bicubic_matches_published(scale: int) -> None:
    if not BSD100.is_dir():
        pytest.skip(f"BSD100 not found at {BSD100} (set SROPS_DATASETS to the folder holding BSD100/)")
    files = _images(BSD100)
    assert len(files) == 100, f"expected 100 images in {BSD100}, found {len(files)}"
    _check("BSD100", scale, _protocol_scores(files, scale), PUBLISHED_BSD100[scale])
