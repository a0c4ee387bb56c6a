"""Decoding image files: modes kept by ``read_image``, 16-bit greyscale scaled (not clipped) for training
data, and Pillow's decompression-bomb guard turned into the usual "cannot read image" error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srops.image import load_image, read_image, read_image_and_profile, write_image
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


def _numbered(h: int, w: int) -> np.ndarray:
    """An RGB image whose every pixel is distinct (so any rotation or flip shows)."""
    v = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3)
    return (v * 7 % 251).astype(np.uint8)


# EXIF orientation → how a viewer shows the stored pixels (independent of Pillow: the TIFF/EXIF table)
ORIENTED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
            8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    a = _numbered(4, 6)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / "phone.png", exif=exif)
    want = ORIENTED[orientation](a)
    got = read_image(tmp_path / "phone.png")
    assert got.shape == want.shape and np.array_equal(got, want)
    # training data sees the picture the way its author saw it too
    assert np.array_equal(read_rgb(tmp_path / "phone.png").permute(1, 2, 0).numpy(), want)


def _png16(path: Path, arr: np.ndarray) -> None:
    import png

    h, w, c = arr.shape
    writer = png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16)
    with open(path, "wb") as fh:
        writer.write(fh, arr.reshape(h, w * c))


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_is_read_and_written_at_16_bits(tmp_path: Path, channels: int) -> None:
    from PIL import ImageCms

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (7, 9, channels), dtype=np.uint16)
    _png16(tmp_path / "in.png", arr)
    got = read_image(tmp_path / "in.png")
    assert got.dtype == np.uint16 and np.array_equal(got, arr)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_image(arr, tmp_path / "out.png", icc_profile=icc)
    again, profile = read_image_and_profile(tmp_path / "out.png")
    assert again.dtype == np.uint16 and np.array_equal(again, arr) and profile == icc
    assert read_rgb(tmp_path / "in.png").dtype.is_floating_point is False  # training data: 8 bits, rounded
    assert np.array_equal(read_rgb(tmp_path / "in.png").permute(1, 2, 0).numpy(),
                          np.floor(arr[..., :3] / 257 + 0.5).astype(np.uint8))


def test_icc_profile_is_returned_and_kept(tmp_path: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_numbered(5, 4)).save(tmp_path / "p.png", icc_profile=icc)
    arr, profile = read_image_and_profile(tmp_path / "p.png")
    assert profile == icc
    write_image(arr, tmp_path / "q.png", icc_profile=profile)
    with Image.open(tmp_path / "q.png") as im:
        assert im.info.get("icc_profile") == icc


def _frames(n: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)) for k in range(n)]


@pytest.mark.parametrize("name, kw", [("anim.gif", {}), ("pages.tif", {}), ("anim.png", {}),
                                      ("anim.webp", {"lossless": True})])
def test_several_frames_are_refused(tmp_path: Path, name: str, kw: dict) -> None:
    first, *rest = _frames(3)
    first.save(tmp_path / name, save_all=True, append_images=rest, **kw)
    with Image.open(tmp_path / name) as im:
        assert getattr(im, "n_frames", 1) == 3
    with pytest.raises(ValueError, match=rf"'.*{name}'.*3 frames"):
        read_image(tmp_path / name)


def test_write_image_is_atomic(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    Image.fromarray(_numbered(4, 4)).save(tmp_path / "keep.png")
    old = (tmp_path / "keep.png").read_bytes()

    def fail(self, fp, *a, **k):  # writes part of the file, then fails as a full disk does
        fp.write(b"half a PNG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        write_image(_numbered(6, 6), tmp_path / "keep.png")
    assert (tmp_path / "keep.png").read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_16bit_colour_png_with_exif_orientation(tmp_path: Path) -> None:
    import png

    arr = np.random.default_rng(2).integers(0, 65536, (5, 8, 3), dtype=np.uint16)
    _png16(tmp_path / "plain.png", arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload  # a PNG eXIf chunk: TIFF data only
    chunks = list(png.Reader(filename=str(tmp_path / "plain.png")).chunks())
    with open(tmp_path / "phone16.png", "wb") as fh:
        png.write_chunks(fh, [chunks[0], (b"eXIf", payload), *chunks[1:]])
    with Image.open(tmp_path / "phone16.png") as im:
        assert im.getexif().get(0x0112) == 6
    got = read_image(tmp_path / "phone16.png")
    assert got.dtype == np.uint16 and np.array_equal(got, ORIENTED[6](arr))


def _tiff16(path: Path, arr: np.ndarray) -> None:
    """A minimal little-endian, uncompressed, one-strip RGB TIFF of ``H x W x 3`` uint16 (Pillow cannot write one)."""
    import struct

    h, w, c = arr.shape
    data = arr.astype("<u2").tobytes()
    n = 10
    bits_at = 8 + 2 + 12 * n + 4
    data_at = bits_at + 2 * c
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, c, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, data_at), (277, 3, 1, c), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, n))
    for tag, typ, count, value in entries:
        inline = struct.pack("<HH", value, 0) if typ == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + inline
    out += struct.pack("<I", 0) + struct.pack(f"<{c}H", *[16] * c) + data
    path.write_bytes(bytes(out))


def test_16bit_colour_tiff_is_read_at_8_bits_with_a_warning(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    _tiff16(tmp_path / "deep.tif", arr)
    with Image.open(tmp_path / "deep.tif") as im:
        assert im.tag_v2[258] == (16, 16, 16)
    with pytest.warns(UserWarning, match=r"deep\.tif.*16-bit colour, read at 8 bits"):
        got = read_image(tmp_path / "deep.tif")
    assert got.dtype == np.uint8 and got.shape == (4, 5, 3)
    assert np.abs(got.astype(int) - (arr >> 8)).max() <= 1  # Pillow's 8-bit reading of the same picture
