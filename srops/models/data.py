"""Super-resolution datasets built from folders of HR images.

Every HR image is read as RGB (greyscale and palette images are converted, 16-bit scaled to 8), cropped to a multiple of
``scale`` (modcrop) and downscaled with MATLAB-compatible bicubic (``srops.image.imresize``); the LR
image is quantised to uint8 levels, as if it had been saved as PNG. Pairs are cached in memory as uint8
tensors ``[3, H, W]`` and optionally on disk (``cache_dir``), keyed by file names, sizes, mtimes and scale.

* :class:`PairedImages`: the decoded, cached (LR, HR) pairs of one or several folders.
* :class:`TrainPatches`: random aligned patches with flips and 90-degree rotations. Sample ``i`` is a pure
  function of ``(seed, i)``, so the sampler state is a single counter; resuming and multi-process training
  stay deterministic (rank ``r`` of ``w`` draws the indices of its own slice of each global batch).
* :class:`ValImages`: full images, float ``[1, 3, h, w]`` / ``[1, 3, H, W]`` in [0, 1], with their names.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from srops.image import IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (``srops.image.IMAGE_EXTENSIONS``) of ``folder``; ValueError if it is missing or has none."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"srops.models.data: image folder {str(path)!r} does not exist or is not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"srops.models.data: image folder {str(path)!r} holds no image "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_rgb(path: str | os.PathLike, allow_large: bool = False) -> torch.Tensor:
    """Decode ``path`` as an RGB uint8 tensor ``[3, H, W]``; ValueError naming the file if unreadable.

    Greyscale is replicated to three channels and alpha dropped. 16-bit images (PNG greyscale, mode
    ``I;16``) are scaled to 8 bits by value / 257, rounded (65535 → 255), never clipped.
    ``allow_large`` lifts Pillow's decompression-bomb pixel limit (see ``srops.image.read_image``).
    """
    from srops.image import read_image

    try:
        arr = read_image(path, allow_large=allow_large, who="srops.models.data")
    except FileNotFoundError as exc:
        raise ValueError(f"srops.models.data: cannot read image {str(path)!r}: no such file") from exc
    if arr.dtype == np.uint16:
        arr = np.floor(arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    arr = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB bicubic ×1/``scale`` of uint8 ``[3, H, W]`` (H, W multiples of scale) → uint8 ``[3, H/s, W/s]``."""
    from srops.image import imresize

    x = hr.unsqueeze(0).to(torch.float64) / 255.0
    lr = imresize(x, 1.0 / scale)
    return torch.floor(lr[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)  # MATLAB uint8(): halves up


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` → float32 in [0, 1]."""
    return img.to(torch.float32) / 255.0


class PairedImages:
    """(LR, HR) uint8 pairs of every image in ``folders`` at ``scale``.

    ``min_lr_size``: images whose LR side is shorter raise ValueError naming them and the largest size
    that every image allows (training needs at least one patch), or, with ``skip_small``, are left out and
    listed in ``skipped`` (``(file, lr_h, lr_w)``); ValueError if none is left. An image smaller than one
    LR pixel (a 1x1 image at ×2) counts as an LR image of side 0: skipped the same way, or, without
    ``skip_small``, a ValueError naming it. ``cache_dir``: optional
    folder for an on-disk cache of the decoded pairs.
    """

    def __init__(self, folders: str | os.PathLike | Sequence[str | os.PathLike], scale: int,
                 min_lr_size: int = 1, cache_dir: str | os.PathLike | None = None, skip_small: bool = False) -> None:
        if isinstance(folders, (str, os.PathLike)):
            folders = [folders]
        if not folders:
            raise ValueError("srops.models.data: 'folders' must name at least one image folder, got none")
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"srops.models.data: 'scale' must be a positive int, got {scale!r}")
        self.scale = scale
        self.files: list[Path] = [f for folder in folders for f in list_images(folder)]
        self.names = [f.stem for f in self.files]
        cached = self._load_cache(cache_dir)
        if cached is None:
            self.hr, self.lr = [], []
            for f in self.files:
                hr, lr = self._make_pair(f, scale)
                self.hr.append(hr)
                self.lr.append(lr)
            self._save_cache(cache_dir)
        else:
            self.hr, self.lr = cached
        small = [k for k, lr in enumerate(self.lr) if min(lr.shape[-2:]) < min_lr_size]
        self.skipped: list[tuple[Path, int, int]] = [(self.files[k], *self.lr[k].shape[-2:]) for k in small]
        self.smallest_lr_side = min(min(lr.shape[-2:]) for lr in self.lr)
        empty = [k for k in small if self.lr[k].numel() == 0]
        if empty and not skip_small:
            f, hr = self.files[empty[0]], self.hr[empty[0]]
            raise ValueError(f"srops.models.data: image {str(f)!r} is too small: {hr.shape[-2]}x{hr.shape[-1]} is "
                             f"below one ×{scale} LR pixel" + (", or skip the small images (data.skip_small)"
                                                             if min_lr_size > 1 else ""))
        if small and (not skip_small or len(small) == len(self.files)):
            f, h, w = self.skipped[0]
            more = f" and {len(small) - 1} more" if len(small) > 1 else ""
            raise ValueError(
                f"srops.models.data: image {str(f)!r}{more} of {len(self.files)} is too small: its ×{scale} LR "
                f"image is {h}x{w}, the LR patch needs {min_lr_size}x{min_lr_size}; "
                + (f"an LR patch of at most {self.smallest_lr_side} uses every image" if self.smallest_lr_side
                   else "no LR patch fits an image below one LR pixel") + ("" if skip_small else
                                                              ", or skip the small images (data.skip_small)"))
        if small:
            keep = [k for k in range(len(self.files)) if k not in set(small)]
            self.files = [self.files[k] for k in keep]
            self.names = [self.names[k] for k in keep]
            self.hr = [self.hr[k] for k in keep]
            self.lr = [self.lr[k] for k in keep]

    @staticmethod
    def _make_pair(path: Path, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(HR modcropped, LR); an image below one LR pixel gives its HR uncropped and an empty LR."""
        hr = read_rgb(path)
        h, w = hr.shape[-2] - hr.shape[-2] % scale, hr.shape[-1] - hr.shape[-1] % scale
        if h == 0 or w == 0:
            return hr, torch.zeros((3, h // scale, w // scale), dtype=torch.uint8)
        hr = hr[:, :h, :w].contiguous()
        return hr, downscale(hr, scale)

    def _cache_file(self, cache_dir: str | os.PathLike) -> Path:
        key = hashlib.sha256()
        for f in self.files:
            st = f.stat()
            key.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        # v2: images are decoded upright (EXIF orientation) and 16-bit colour at 16 bits; v1 caches hold the
        # older decoding and are not reused
        key.update(f"scale={self.scale}|v2".encode())
        return Path(cache_dir) / f"pairs_x{self.scale}_{key.hexdigest()[:16]}.pt"

    def _load_cache(self, cache_dir) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        if cache_dir is None:
            return None
        path = self._cache_file(cache_dir)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return list(blob["hr"]), list(blob["lr"])
        except Exception:  # a damaged cache is rebuilt, never trusted
            return None

    def _save_cache(self, cache_dir) -> None:
        if cache_dir is None:
            return
        path = self._cache_file(cache_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"hr": self.hr, "lr": self.lr}, tmp)
        os.replace(tmp, path)

    def __len__(self) -> int:
        return len(self.files)


def augment(lr: torch.Tensor, hr: torch.Tensor, hflip: bool, vflip: bool, rot90: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same flips / transpose-rotation to ``[..., C, h, w]`` LR and ``[..., C, H, W]`` HR."""
    out = []
    for x in (lr, hr):
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        if rot90:
            x = x.rot90(1, (-2, -1))
        out.append(x)
    return out[0], out[1]


class TrainPatches(torch.utils.data.Dataset):
    """Random aligned (LR, HR) patches: LR ``[3, p, p]``, HR ``[3, p*s, p*s]``, float32 in [0, 1].

    ``self[i]`` is deterministic in ``(seed, i)``: a random image, a random LR-grid position and, if
    ``augment``, independent p = 0.5 horizontal flip, vertical flip and 90-degree rotation.
    ``skip_small``: leave out images smaller than the patch (see :class:`PairedImages`; :meth:`skip_summary`).
    """

    def __init__(self, folders, scale: int, lr_patch: int = 48, augment: bool = True, seed: int = 0,
                 cache_dir=None, skip_small: bool = False) -> None:
        if not isinstance(lr_patch, int) or lr_patch < 1:
            raise ValueError(f"srops.models.data: 'lr_patch' must be a positive int, got {lr_patch!r}")
        self.pairs = PairedImages(folders, scale, min_lr_size=lr_patch, cache_dir=cache_dir, skip_small=skip_small)
        self.scale, self.lr_patch, self.augment, self.seed = scale, lr_patch, augment, seed

    def __len__(self) -> int:
        return 2**62

    def skip_summary(self) -> str | None:
        """One line on the images left out for being smaller than the patch, or None if none was."""
        skipped = self.pairs.skipped
        if not skipped:
            return None
        total = len(skipped) + len(self.pairs)
        names = ", ".join(f"{f.name} ({h}x{w})" for f, h, w in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        side = self.pairs.smallest_lr_side
        fits = (f"data.lr_patch <= {side} would use them all" if side > 0 else
                f"{sum(1 for _, h, w in skipped if min(h, w) == 0)} of them are below one LR pixel")
        return (f"data: skipped {len(skipped)} of {total} training images whose ×{self.scale} LR image is smaller "
                f"than the {self.lr_patch}x{self.lr_patch} LR patch: {names}; {fits}")

    def locate(self, index: int) -> tuple[int, int, int, tuple[bool, bool, bool]]:
        """(image index, LR top, LR left, (hflip, vflip, rot90)) of sample ``index``."""
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(len(self.pairs)))
        lr = self.pairs.lr[k]
        top = int(rng.integers(lr.shape[-2] - self.lr_patch + 1))
        left = int(rng.integers(lr.shape[-1] - self.lr_patch + 1))
        flips = tuple(bool(b) for b in rng.random(3) < 0.5) if self.augment else (False, False, False)
        return k, top, left, flips  # type: ignore[return-value]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, top, left, flips = self.locate(index)
        p, s = self.lr_patch, self.scale
        lr = self.pairs.lr[k][:, top:top + p, left:left + p]
        hr = self.pairs.hr[k][:, top * s:(top + p) * s, left * s:(left + p) * s]
        lr, hr = augment(lr, hr, *flips)
        return to_float(lr.contiguous()), to_float(hr.contiguous())

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank ``rank``'s share of global batch ``step``: LR ``[b, 3, p, p]``, HR ``[b, 3, ps, ps]``.

        The global batch of ``batch_size`` samples is split evenly across ``world_size`` ranks.
        """
        if batch_size % world_size:
            raise ValueError(f"srops.models.data: 'batch_size' ({batch_size}) must be divisible by the "
                             f"number of processes ({world_size})")
        per = batch_size // world_size
        start = step * batch_size + rank * per
        items = [self[start + i] for i in range(per)]
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


class ValImages:
    """Full validation images: iterating yields ``(name, lr [1,3,h,w], hr [1,3,H,W])`` float in [0, 1].

    Every HR image must keep SSIM's 11x11 window after shaving ``crop_border`` pixels (default ``scale``)
    from each side; a smaller one is a ValueError naming it when the set is built.
    """

    def __init__(self, folders, scale: int, cache_dir=None, max_images: int | None = None,
                 crop_border: int | None = None) -> None:
        from srops.image.metrics import _SSIM_SIZE

        self.pairs = PairedImages(folders, scale, cache_dir=cache_dir)
        self.scale = scale
        crop = scale if crop_border is None else int(crop_border)
        for f, hr in zip(self.pairs.files, self.pairs.hr, strict=True):
            h, w = hr.shape[-2] - 2 * crop, hr.shape[-1] - 2 * crop
            if min(h, w) < _SSIM_SIZE:
                raise ValueError(
                    f"srops.models.data: validation image {str(f)!r} is too small: {hr.shape[-2]}x{hr.shape[-1]} "
                    f"(cropped to a multiple of {scale}) leaves {max(h, 0)}x{max(w, 0)} after shaving {crop} border "
                    f"pixels, and SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE}")
        self.count = len(self.pairs) if max_images is None else min(int(max_images), len(self.pairs))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for k in range(self.count):
            yield self.pairs.names[k], to_float(self.pairs.lr[k])[None], to_float(self.pairs.hr[k])[None]
