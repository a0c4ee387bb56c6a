"""Image files (pillow round trips, greyscale, corrupt files) and modcrop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srops.image import load_image, modcrop, save_image


@pytest.mark.parametrize("suffix", ["png", "bmp"])
def test_lossless_round_trip(tmp_path: Path, suffix: str) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / f"a.{suffix}")
    x = load_image(tmp_path / f"a.{suffix}")
    assert x.shape == (1, 3, 7, 5) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255)
    save_image(x, tmp_path / f"b.{suffix}")
    assert np.array_equal(np.asarray(Image.open(tmp_path / f"b.{suffix}")), arr)


def test_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 6, 3), 200, dtype=np.uint8)).save(tmp_path / "c.jpg", quality=95)
    x = load_image(tmp_path / "c.jpg", dtype=torch.float64)
    assert x.shape == (1, 3, 8, 6) and x.dtype == torch.float64
    assert torch.allclose(x, torch.full_like(x, 200 / 255), atol=3 / 255)


def test_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    arr = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    x = load_image(str(tmp_path / "g.png"))
    assert x.shape == (1, 3, 5, 6)
    for c in range(3):
        assert torch.equal(x[0, c], torch.from_numpy(arr).float() / 255)


def test_save_quantises_and_clips(tmp_path: Path) -> None:
    x = torch.tensor([[-0.3, 0.5], [0.2 / 255 + 0.4, 1.4]]).expand(3, 2, 2)
    save_image(x, tmp_path / "q.png")
    got = np.asarray(Image.open(tmp_path / "q.png"))[..., 0]
    assert got.tolist() == [[0, 128], [102, 255]]


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image(bad)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.jpg"):
        load_image(text)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_modcrop() -> None:
    x = torch.rand(2, 3, 13, 10)
    assert modcrop(x, 4).shape == (2, 3, 12, 8)
    assert modcrop(x, 3).shape == (2, 3, 12, 9)
    assert modcrop(x, 1).shape == x.shape
    assert torch.equal(modcrop(x, 4), x[..., :12, :8])
    with pytest.raises(ValueError, match="scale"):
        modcrop(x, 0)
    with pytest.raises(TypeError, match="scale"):
        modcrop(x, 2.0)
    with pytest.raises(ValueError, match="smaller"):
        modcrop(torch.rand(1, 3, 2, 8), 3)
