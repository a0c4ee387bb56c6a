"""srops-upscale writes the picture the user sees: EXIF orientation applied, the ICC profile carried over,
16-bit colour kept at 16 bits, animations refused by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from srops.models.upscale import main
from tests.models.test_upscale import crop, read, write_checkpoint


def test_phone_photo_orientation_profile_and_depth(tmp_path: Path, capsys) -> None:
    import png

    ck = write_checkpoint(tmp_path / "tiny.pt", iteration=1)
    d = tmp_path / "in"
    d.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise (portrait)
    Image.fromarray(crop("butterfly", 20, 32)).save(d / "phone.jpg", exif=exif, quality=95)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(crop("bird", 18, 22)).save(d / "profiled.png", icc_profile=icc)
    deep = (crop("head", 16, 14).astype(np.uint16) * 257 + np.arange(16 * 14 * 3).reshape(16, 14, 3) % 200)
    with open(d / "deep.png", "wb") as fh:
        png.Writer(14, 16, greyscale=False, bitdepth=16).write(fh, deep.astype(np.uint16).reshape(16, -1))
    first, second = (Image.fromarray(crop(n, 12, 12)) for n in ("bird", "head"))
    first.save(d / "anim.png", save_all=True, append_images=[second])  # APNG
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second, first])
    out = tmp_path / "out"
    assert main([str(d), str(tmp_path / "anim.gif"), "-o", str(out), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert "anim.png" in err and "2 frames" in err and "Traceback" not in err
    assert "anim.gif" in err and "3 frames" in err
    assert sorted(p.name for p in out.iterdir()) == ["deep.png", "phone.png", "profiled.png"]
    assert read(out / "phone.png").size == (40, 64)  # portrait, as viewers show it: 2 x (20 wide, 32 high)
    assert read(out / "profiled.png").info.get("icc_profile") == icc
    w, h, rows, info = png.Reader(filename=str(out / "deep.png")).asDirect()
    got = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, info["planes"])
    assert (w, h, info["bitdepth"], info["planes"]) == (28, 32, 16, 3)
    assert got.dtype == np.uint16 and len(np.unique(got)) > 256 and np.any(got % 257 != 0)
