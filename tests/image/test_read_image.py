"""Decoding image files: modes kept by ``read_image``, 16-bit greyscale scaled (not clipped) for training
data, and Pillow's decompression-bomb guard turned into the usual "cannot read image" error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srops.image import load_image, read_image, write_image
from srops.models.data import PairedImages, read_rgb


def grey16(h: int = 12, w: int = 10) -> np.ndarray:
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = grey16()
    Image.fromarray(arr).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"  # the case the dataset code met
    rgb = read_rgb(tmp_path / "g16.png").numpy()
    want = np.floor(arr / 257 + 0.5).astype(np.uint8)
    assert rgb.shape == (3, 12, 10) and rgb.dtype == np.uint8
    for c in range(3):
        assert np.array_equal(rgb[c], want)
    assert rgb.min() == 0 and rgb.max() == 255 and np.median(rgb) < 200  # not "nearly white"
    x = load_image(tmp_path / "g16.png").numpy()[0]
    assert np.allclose(x[1], arr / 65535, atol=1e-6)
    pairs = PairedImages(tmp_path, 2)
    assert np.array_equal(pairs.hr[0][0].numpy(), want)


def test_read_image_keeps_modes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    Image.fromarray(np.dstack([rgb[..., 0], alpha])).save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    pal = Image.fromarray(rgb).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    Image.fromarray(grey16(6, 5)).save(tmp_path / "g16.png")
    cases = {"rgb.png": (3, np.uint8), "rgba.png": (4, np.uint8), "l.png": (1, np.uint8), "la.png": (2, np.uint8),
             "cmyk.jpg": (3, np.uint8), "pal.png": (4, np.uint8), "g16.png": (1, np.uint16)}
    for name, (c, dtype) in cases.items():
        arr = read_image(tmp_path / name)
        assert arr.shape == (6, 5, c) and arr.dtype == dtype, name
    assert np.array_equal(read_image(tmp_path / "rgba.png")[..., 3], alpha)
    assert np.array_equal(read_image(tmp_path / "la.png")[..., 0], rgb[..., 0])
    write_image(read_image(tmp_path / "g16.png"), tmp_path / "copy16.png")
    assert np.array_equal(read_image(tmp_path / "copy16.png")[..., 0], grey16(6, 5))
    Image.fromarray(np.ones((3, 3), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"cannot read image '.*f\.tif'.*not supported"):
        read_image(tmp_path / "f.tif")


def test_decompression_bomb_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for reader in (read_rgb, read_image, load_image):
        with pytest.raises(ValueError, match=r"cannot read image '.*huge\.png'.*allow_large"):
            reader(tmp_path / "huge.png")
    assert read_rgb(tmp_path / "huge.png", allow_large=True).shape == (3, 40, 40)
    assert read_image(tmp_path / "huge.png", allow_large=True).shape == (40, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100
