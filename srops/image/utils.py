"""Image files and cropping: ``load_image``, ``save_image``, ``modcrop``.

Images are float RGB tensors in [0, 1], ``[1, 3, H, W]`` (the package convention).
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

PathLike = Union[str, "os.PathLike[str]"]


def modcrop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right edges so that H and W are multiples of ``scale`` (MATLAB ``modcrop``).

    Args:
        x: tensor ``[..., H, W]`` (e.g. ``[B, C, H, W]``).
        scale: integer >= 1.

    Returns:
        view ``[..., H - H % scale, W - W % scale]`` of ``x`` (top-left corner kept).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"srops.image.modcrop: 'x' must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"srops.image.modcrop: 'x' must have at least 2 dims [..., H, W], got shape {tuple(x.shape)}")
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise TypeError(f"srops.image.modcrop: 'scale' must be an int >= 1, got {type(scale).__name__} {scale!r}")
    if scale < 1:
        raise ValueError(f"srops.image.modcrop: 'scale' must be an int >= 1, got {scale}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h < scale or w < scale:
        raise ValueError(f"srops.image.modcrop: image {h}x{w} is smaller than 'scale' = {scale}")
    return x[..., : h - h % scale, : w - w % scale]


def load_image(path: PathLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read a PNG/BMP/JPEG (anything pillow reads) as RGB float ``[1, 3, H, W]`` in [0, 1].

    Greyscale images are replicated to three channels, palette images
    expanded, alpha dropped; 16-bit greyscale is scaled by 1/65535, 8-bit by 1/255.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file exists but is not a readable image (names the file).
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"srops.image.load_image: no such image file: '{path}'")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                arr = np.asarray(img, dtype=np.float64)
                peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
                arr = np.repeat((arr / peak)[..., None], 3, axis=2)
            else:
                arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"srops.image.load_image: cannot read image file '{path}': {exc}") from exc
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"srops.image.load_image: '{path}' decoded to an unexpected array of shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].to(dtype)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, C, H, W]`` or ``[C, H, W]`` float in [0, 1] to an ``H x W x C`` (or ``H x W`` if C = 1) uint8 array.

    Values are clipped to [0, 1] and rounded half up (MATLAB's uint8 rule).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("srops.image.to_uint8: 'x' must be a floating torch.Tensor [1, C, H, W]")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"srops.image.to_uint8: 'x' must hold one image [1, C, H, W], got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"srops.image.to_uint8: 'x' must be [1, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    q = torch.floor(x.detach().to("cpu", torch.float64).clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    arr = q.permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def save_image(x: torch.Tensor, path: PathLike) -> None:
    """Write ``[1, C, H, W]`` / ``[C, H, W]`` float in [0, 1] (C = 1 or 3) as an 8-bit image; format from the suffix."""
    from PIL import Image

    Image.fromarray(to_uint8(x)).save(os.fspath(path))
