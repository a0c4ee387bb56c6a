"""srops/models/data.py: loading errors, modcrop + bicubic LR, patch alignment, augmentation, caching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srops.image import imresize
from srops.models.data import PairedImages, TrainPatches, ValImages, read_rgb
from tests.train.conftest import smooth_image, write_folder


def test_empty_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="empty"):
        PairedImages(tmp_path / "empty", 2)
    with pytest.raises(ValueError, match="nope"):
        PairedImages(tmp_path / "nope", 2)


def test_corrupt_file_named(tmp_path: Path) -> None:
    write_folder(tmp_path, [(40, 40)])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ValueError, match="broken.png"):
        PairedImages(tmp_path, 2)


def test_too_small_file_named(tmp_path: Path) -> None:
    write_folder(tmp_path, [(40, 40), (12, 30)])
    with pytest.raises(ValueError, match="img1.png.*too small"):
        TrainPatches(tmp_path, 2, lr_patch=8)
    TrainPatches(tmp_path, 2, lr_patch=6)  # 12x30 → LR 6x15 holds one 6x6 patch


def test_formats_grey_and_modcrop(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(smooth_image(rng, 31, 29)).save(tmp_path / "a.bmp")
    Image.fromarray(smooth_image(rng, 30, 30)).save(tmp_path / "b.jpg", quality=95)
    Image.fromarray(smooth_image(rng, 33, 35)[..., 0]).save(tmp_path / "c.png")  # mode L
    pairs = PairedImages(tmp_path, 3)
    assert pairs.names == ["a", "b", "c"]
    assert [tuple(h.shape) for h in pairs.hr] == [(3, 30, 27), (3, 30, 30), (3, 33, 33)]
    assert [tuple(lr.shape) for lr in pairs.lr] == [(3, 10, 9), (3, 10, 10), (3, 11, 11)]
    grey = pairs.hr[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    raw = np.asarray(Image.open(tmp_path / "a.bmp"))
    assert np.array_equal(pairs.hr[0].permute(1, 2, 0).numpy(), raw[:30, :27])


def test_lr_is_quantised_matlab_bicubic(tiny_train: Path) -> None:
    pairs = PairedImages(tiny_train, 2)
    hr = pairs.hr[0].double()[None] / 255
    expected = np.floor(np.clip(imresize(hr, 0.5)[0].numpy(), 0, 1) * 255 + 0.5)
    assert pairs.lr[0].dtype == torch.uint8
    assert np.array_equal(pairs.lr[0].numpy(), expected.astype(np.uint8))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_patch_alignment(tiny_train: Path, scale: int) -> None:
    """An LR patch equals the bicubic downscale of its HR patch away from the patch border."""
    ds = TrainPatches(tiny_train, scale, lr_patch=12, augment=False, seed=3)
    margin = 3  # bicubic support at 1/s reaches 2 LR pixels past the patch
    for i in range(6):
        lr, hr = ds[i]
        assert lr.shape == (3, 12, 12) and hr.shape == (3, 12 * scale, 12 * scale)
        down = imresize(hr.double()[None], 1 / scale)[0].clamp(0, 1)
        diff = (lr.double() - down)[:, margin:-margin, margin:-margin].abs().max().item()
        assert diff <= 0.5 / 255 + 1e-9, (i, diff)
        # ... and a misaligned HR patch (one HR pixel off) would not match
        k, top, left, _ = ds.locate(i)
        shifted = ds.pairs.hr[k][:, top * scale + 1:(top + 12) * scale + 1, left * scale:(left + 12) * scale]
        if shifted.shape[-2] == 12 * scale:
            d2 = imresize(shifted.double()[None] / 255, 1 / scale)[0]
            assert (lr.double() - d2)[:, margin:-margin, margin:-margin].abs().max() > 1 / 255


def test_augmentation_consistent(tiny_train: Path) -> None:
    plain = TrainPatches(tiny_train, 2, lr_patch=10, augment=False, seed=5)
    aug = TrainPatches(tiny_train, 2, lr_patch=10, augment=True, seed=5)
    seen = set()
    for i in range(40):
        k, top, left, flips = aug.locate(i)
        seen.add(flips)
        lr, hr = aug[i]
        raw_lr = plain.pairs.lr[k][:, top:top + 10, left:left + 10].permute(1, 2, 0).numpy()
        raw_hr = plain.pairs.hr[k][:, 2 * top:2 * top + 20, 2 * left:2 * left + 20].permute(1, 2, 0).numpy()
        for arr, got in ((raw_lr, lr), (raw_hr, hr)):
            if flips[0]:
                arr = arr[:, ::-1]
            if flips[1]:
                arr = arr[::-1]
            if flips[2]:
                arr = np.rot90(arr, 1, (0, 1))
            assert np.array_equal((got * 255).round().byte().permute(1, 2, 0).numpy(), arr)
    assert len(seen) == 8  # every flip/rotation combination occurs


def test_samples_deterministic_and_batch_split(tiny_train: Path) -> None:
    ds = TrainPatches(tiny_train, 2, lr_patch=8, seed=7)
    lr, hr = ds.batch(3, 4)
    lr0, hr0 = ds.batch(3, 4, rank=0, world_size=2)
    lr1, hr1 = ds.batch(3, 4, rank=1, world_size=2)
    assert torch.equal(torch.cat([lr0, lr1]), lr) and torch.equal(torch.cat([hr0, hr1]), hr)
    assert not torch.equal(ds.batch(4, 4)[0], lr)
    with pytest.raises(ValueError, match="divisible"):
        ds.batch(0, 3, rank=0, world_size=2)


def test_multiple_folders_and_disk_cache(tiny_train: Path, tiny_val: Path, tmp_path: Path) -> None:
    a = PairedImages([tiny_train, tiny_val], 2, cache_dir=tmp_path / "cache")
    assert len(a) == 6
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    b = PairedImages([tiny_train, tiny_val], 2, cache_dir=tmp_path / "cache")
    assert all(torch.equal(x, y) for x, y in zip(a.lr + a.hr, b.lr + b.hr))


def test_val_images(tiny_val: Path) -> None:
    items = list(ValImages(tiny_val, 4))
    assert [n for n, _, _ in items] == ["img0", "img1"]
    name, lr, hr = items[0]
    assert lr.shape == (1, 3, 12, 15) and hr.shape == (1, 3, 48, 60)
    assert torch.equal((hr[0] * 255).round().byte(), read_rgb(tiny_val / "img0.png")[:, :48, :60])


def test_small_images_skipped_with_summary(tmp_path: Path) -> None:
    """15.2: images smaller than the patch are skipped (one summary line) or named with the size that fits."""
    write_folder(tmp_path, [(40, 40), (12, 30), (14, 16)])
    with pytest.raises(ValueError, match=r"img1\.png.* and 1 more of 3 is too small.*at most 6 uses every image"
                                         r".*data\.skip_small"):
        TrainPatches(tmp_path, 2, lr_patch=8)
    patches = TrainPatches(tmp_path, 2, lr_patch=8, skip_small=True)
    assert patches.pairs.names == ["img0"] and len(patches.pairs) == 1
    summary = patches.skip_summary()
    assert summary.startswith("data: skipped 2 of 3 training images") and "img1.png (6x15)" in summary
    assert "data.lr_patch <= 6" in summary and "\n" not in summary
    assert TrainPatches(tmp_path, 2, lr_patch=6, skip_small=True).skip_summary() is None
    with pytest.raises(ValueError, match="too small"):
        TrainPatches(tmp_path, 2, lr_patch=30, skip_small=True)  # none left


def test_training_folders_take_the_image_types_upscale_takes(tmp_path) -> None:
    """One list of image suffixes (srops.image.IMAGE_EXTENSIONS) for training folders and upscale inputs."""
    from srops.image import IMAGE_EXTENSIONS
    from srops.models import upscale
    from srops.models.data import list_images

    for suffix in (".tif", ".webp", ".PNG"):
        fmt = Image.registered_extensions()[suffix.lower()]
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / f"a{suffix}", format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "a.tif", "a.webp"]
    assert upscale.READ_EXTENSIONS is IMAGE_EXTENSIONS
