"""File plumbing behind ``read_image`` / ``write_image``: atomic writes, 16-bit colour PNG, EXIF orientation.

* :func:`write_atomic` writes through a temporary file in the target folder and ``os.replace`` s it onto the
  target, so a failed write (full disk, read-only folder, an exception in the encoder) never damages an
  existing file and leaves no temporary file behind.
* Pillow keeps 16 bits for greyscale only: it decodes 16-bit RGB/RGBA PNGs to 8 bits and cannot encode
  them. Those go through ``pypng`` (:func:`read_png16`, :func:`write_png16`), arrays ``H x W x C`` uint16.
"""
from __future__ import annotations

import os
import secrets
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

EXIF_ORIENTATION = 0x0112


def temporary_name(path: Path) -> Path:
    """A fresh hidden name next to ``path``: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a new temporary file next to ``path``, sync it, then move it onto ``path``.

    The temporary file is created with the usual permissions (0o666 less the umask) and removed again
    if anything fails; the error (OSError for ENOSPC, EROFS, ...) propagates. The fsync makes the new
    content durable before it replaces the old.
    """
    path = Path(path)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_writable_folder(folder: Path) -> None:
    """OSError unless a file can be created in ``folder`` (probes with a temporary file, then removes it)."""
    probe = temporary_name(folder / "probe")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    os.unlink(probe)


def is_colour16(img) -> bool:
    """True for a Pillow-opened (not yet loaded) file of 16-bit RGB/RGBA samples, which Pillow decodes to 8 bits."""
    if not img.tile:
        return False
    args = img.tile[0][3]
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(rawmode, str) and rawmode.startswith(("RGB;16", "RGBA;16", "RGBX;16"))


def read_png16(path: str) -> np.ndarray:
    """A 16-bit colour PNG → ``H x W x C`` uint16 (C = 3 or 4; a tRNS colour key becomes alpha)."""
    import png

    with open(path, "rb") as fh:
        width, height, rows, info = png.Reader(file=fh).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    return arr.reshape(height, width, info["planes"])


def write_png16(arr: np.ndarray, fh: BinaryIO, icc_profile: bytes | None = None) -> None:
    """Encode ``H x W x C`` uint16 (C = 1..4) as a 16-bit PNG into ``fh``, with an iCCP chunk if given."""
    import io

    import png

    h, w, c = arr.shape
    writer = png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16, compression=6)
    if icc_profile is None:
        writer.write_array(fh, np.ascontiguousarray(arr).reshape(-1))
        return
    buf = io.BytesIO()
    writer.write_array(buf, np.ascontiguousarray(arr).reshape(-1))
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    iccp = b"ICC profile\x00\x00" + zlib.compress(icc_profile)
    png.write_chunks(fh, [chunks[0], (b"iCCP", iccp), *chunks[1:]])


# EXIF orientation → the numpy view a viewer shows (the TIFF/EXIF table; ImageOps.exif_transpose's rule)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8; anything else: unchanged) to ``H x W x C``."""
    fix = _ORIENT.get(orientation)
    return arr if fix is None else np.ascontiguousarray(fix(arr))


def icc_colour_space(profile: bytes) -> str:
    """The data colour space an ICC profile describes (``"RGB"``, ``"GRAY"``, ``"CMYK"``...), from its header."""
    return profile[16:20].decode("ascii", "replace").strip() if len(profile) >= 128 else "?"
