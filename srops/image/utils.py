"""Image files and cropping: ``read_image``, ``write_image``, ``load_image``, ``save_image``, ``modcrop``.

Images are float RGB tensors in [0, 1], ``[1, 3, H, W]`` (the package convention). ``read_image`` /
``write_image`` keep what a file holds instead: 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
channels at 8 or 16 bits, as an ``H x W x C`` numpy array.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

PathLike = Union[str, "os.PathLike[str]"]

#: File suffixes (lower case) that the folder readers of srops take for images: training and validation
#: folders (``srops.models.data``) and ``srops-upscale`` inputs. Pillow decodes every one of them.
IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


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


_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def read_image(path: PathLike, allow_large: bool = False, who: str = "srops.image.read_image") -> np.ndarray:
    """Decode an image file into an ``H x W x C`` uint8 or uint16 array, keeping grey, alpha and 16 bits.

    The picture is the one image viewers show: an EXIF orientation (phone photos) is applied, as
    ``PIL.ImageOps.exif_transpose`` does; this is right for training data too, whose HR images must
    be upright for their LR partners and for the network's output to match what people see.

    C is 1 (grey: modes L, 1, 16-bit I;16 and 32-bit I with values in 0..65535), 2 (LA), 3 (RGB; also
    CMYK, YCbCr, palettes without transparency) or 4 (RGBA; palettes with transparency). 16-bit files
    (greyscale, and 16-bit RGB/RGBA PNG) give uint16, everything else uint8; 16-bit colour in another
    format (TIFF) is decoded by Pillow at 8 bits, with a ``UserWarning`` saying so.

    ``allow_large``: lift Pillow's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``, about
    89 megapixels by default) for this call; otherwise a larger image raises the ValueError below.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``cannot read image '<path>': ...`` for unreadable, truncated, too large or
            unsupported (floating point) images, and for files of several frames (animated GIF, PNG
            or WebP, multi-page TIFF), which are refused rather than cut to their first frame.
    """
    return read_image_and_profile(path, allow_large, who)[0]


def read_image_and_profile(path: PathLike, allow_large: bool = False, who: str = "srops.image.read_image"
                           ) -> tuple[np.ndarray, bytes | None]:
    """:func:`read_image`, plus the file's ICC colour profile (``bytes``, or None without one).

    A profile is returned only when it describes the returned pixels (an RGB profile for C = 3, 4, a grey
    one for C = 1, 2); one that does not (a CMYK JPEG's profile after the conversion to RGB) is dropped
    with a ``UserWarning`` naming the file.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    from srops.image.files import EXIF_ORIENTATION, icc_colour_space, is_colour16, orient, read_png16

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{who}: no such image file: '{path}'")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if allow_large:
            Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            if allow_large:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                frames = getattr(img, "n_frames", 1)
                if frames > 1 and img.format != "MPO":  # MPO: a camera JPEG whose first image is the photo
                    raise _SeveralFrames(f"it holds {frames} frames (an animation or a multi-page file), and "
                                         "only single images are supported: extract the frame you want first")
                deep = is_colour16(img)
                if deep and img.format != "PNG":
                    warnings.warn(f"{who}: '{path}' holds 16-bit colour, read at 8 bits (16-bit colour is read "
                                  "at 16 bits from PNG only: convert the file to PNG to keep its precision)",
                                  UserWarning, stacklevel=2)
                    deep = False
                img.load()
                profile = img.info.get("icc_profile") or None
                if deep:
                    arr = orient(read_png16(path), img.getexif().get(EXIF_ORIENTATION, 1))
                else:
                    arr = _to_array(ImageOps.exif_transpose(img))
    except _SeveralFrames as exc:
        raise ValueError(f"{who}: cannot read image '{path}': {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{who}: cannot read image '{path}': it is larger than Pillow's decompression-bomb "
                         f"limit of {limit} pixels ({exc}); to read it anyway pass allow_large=True "
                         "(srops-upscale: --allow-large-images)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{who}: cannot read image '{path}': {exc}") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if profile is not None:
        space, want = icc_colour_space(profile), ("RGB" if arr.shape[2] >= 3 else "GRAY")
        if space != want:
            warnings.warn(f"{who}: the ICC profile of '{path}' describes {space} colours, not the {want} pixels "
                          "it was read as; the profile is dropped", UserWarning, stacklevel=2)
            profile = None
    return arr, profile


class _SeveralFrames(Exception):
    pass


def _to_array(img) -> np.ndarray:
    mode = img.mode
    if mode in _16BIT_MODES:
        return np.array(img).astype(np.uint16)[..., None]
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"32-bit integer image with values {arr.min()}..{arr.max()} outside 0..65535")
        return arr.astype(np.uint16)[..., None]
    if mode in ("F", "I;32", "RGBX") or mode.startswith("F;"):
        raise ValueError(f"image mode {mode!r} is not supported (8/16-bit grey, grey+alpha, RGB or RGBA)")
    if mode in ("P", "PA"):
        mode = "RGBA" if mode == "PA" or "transparency" in img.info else "RGB"
        img = img.convert(mode)
    elif mode in ("1", "L"):
        mode, img = "L", img.convert("L")
    elif mode in ("LA", "La"):
        mode, img = "LA", img.convert("LA")
    elif mode in ("RGBA", "RGBa"):
        mode, img = "RGBA", img.convert("RGBA")
    elif mode != "RGB":
        mode, img = "RGB", img.convert("RGB")
    arr = np.array(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def write_image(arr: np.ndarray, path: PathLike, icc_profile: bytes | None = None) -> None:
    """Write an ``H x W x C`` uint8 or uint16 array (C = 1, 2, 3, 4); format from the suffix.

    uint16 greyscale becomes a 16-bit greyscale file (PNG/TIFF); uint16 with 2-4 channels a 16-bit PNG
    (other formats: ValueError). ``icc_profile`` is embedded when given. The file is written to a
    temporary name in the same folder and moved onto ``path`` (``os.replace``): a failed write (OSError,
    e.g. a full disk) leaves an existing ``path`` as it was and no temporary file behind.
    """
    from pathlib import Path

    from PIL import Image

    from srops.image.files import write_atomic, write_png16

    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError("srops.image.write_image: 'arr' must be an H x W x C numpy array with C in 1..4, got "
                         f"{getattr(arr, 'shape', type(arr).__name__)}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"srops.image.write_image: 'arr' must be uint8 or uint16, got {arr.dtype}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"srops.image.write_image: cannot tell the image format of '{path}' from its suffix")
    extra = {} if icc_profile is None else {"icc_profile": icc_profile}
    if arr.dtype == np.uint16 and arr.shape[2] > 1:
        if fmt != "PNG":
            raise ValueError(f"srops.image.write_image: 16-bit images with {arr.shape[2]} channels are written as "
                             f"PNG only, got '{path}'")
        write_atomic(path, lambda fh: write_png16(arr, fh, icc_profile))
        return
    img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))
    write_atomic(path, lambda fh: img.save(fh, format=fmt, **extra))


def load_image(path: PathLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read a PNG/BMP/JPEG (anything pillow reads) as RGB float ``[1, 3, H, W]`` in [0, 1].

    Greyscale images are replicated to three channels, palette images
    expanded, alpha dropped; 16-bit greyscale is scaled by 1/65535, 8-bit by 1/255.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file exists but is not a readable image (names the file).
    """
    arr = read_image(path, who="srops.image.load_image")
    peak = 65535.0 if arr.dtype == np.uint16 else 255.0
    rgb = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    arr = rgb.astype(np.float64) / peak
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
    """Write ``[1, C, H, W]`` / ``[C, H, W]`` float in [0, 1] (C = 1 or 3) as an 8-bit image; format from the suffix.

    Written atomically, as :func:`write_image`.
    """
    arr = to_uint8(x)
    write_image(arr[..., None] if arr.ndim == 2 else arr, path)
