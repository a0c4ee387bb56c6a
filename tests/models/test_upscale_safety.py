"""srops-upscale never destroys a user's files and one bad image never ends the batch: outputs that are
inputs are refused, existing outputs need --overwrite (or are kept with --skip-existing), every write goes
through a temporary file (a full disk leaves the old file intact and no temporary file behind), and a
broken image, a failed write or a too-small image is one error line while the rest of the batch runs."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srops.models.upscale import main
from tests.models.test_upscale import ROOT, crop, read, write_checkpoint


@pytest.fixture()
def ck(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "tiny.pt", iteration=1)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Three real photos: two PNGs and a JPEG."""
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(crop("butterfly", 30, 34)).save(d / "a.png")
    Image.fromarray(crop("bird", 28, 26)).save(d / "b.png")
    Image.fromarray(crop("head", 25, 31)).save(d / "c.jpg", quality=90)
    return d


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_output_that_is_an_input_is_refused(folder: Path, ck: Path, capsys) -> None:
    before = snapshot(folder)
    for extra in ([], ["--overwrite"], ["--skip-existing"]):
        assert main([str(folder), "-o", str(folder), "--checkpoint", str(ck), *extra]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(error_lines(err)) == 1, err
        assert str(folder / "a.png") in err and "input" in err
        assert snapshot(folder) == before  # nothing written, nothing overwritten
    # a single file upscaled onto itself through a glob
    assert main([str(folder / "*.png"), "-o", str(folder), "--checkpoint", str(ck)]) == 1
    assert snapshot(folder) == before


def test_existing_output_needs_overwrite_or_skip(tmp_path: Path, folder: Path, ck: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"an unrelated file the user keeps")
    args = [str(folder), "-o", str(out), "--checkpoint", str(ck)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and str(out / "a.png") in err and "--overwrite" in err
    assert "--skip-existing" in err
    assert snapshot(out) == {"a.png": b"an unrelated file the user keeps"}  # refused before any work
    assert main([*args, "--skip-existing"]) == 0
    cap = capsys.readouterr()
    assert (out / "a.png").read_bytes() == b"an unrelated file the user keeps"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert "skip" in cap.err and str(out / "a.png") in cap.err
    assert "2 of 3" in cap.out + cap.err  # the summary counts the skipped image
    assert main([*args, "--overwrite"]) == 0
    assert read(out / "a.png").size == (68, 60)
    with pytest.raises(SystemExit) as info:  # the two flags contradict each other
        main([*args, "--overwrite", "--skip-existing"])
    assert info.value.code == 2


def _partial_then_enospc(calls: list[str]):
    """A stand-in for PIL's Image.save that writes part of the file, then fails as a full disk does."""
    real = Image.Image.save

    def save(self, fp, format=None, **params):  # noqa: A002 (Pillow's own argument name)
        calls.append(os.fspath(fp) if isinstance(fp, (str, os.PathLike)) else getattr(fp, "name", "?"))
        if len(calls) == 1:
            with open(fp, "wb") if isinstance(fp, (str, os.PathLike)) else fp as fh:
                fh.write(b"\x89PNG\r\n\x1a\n partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fp, format, **params)

    return save


def test_full_disk_keeps_the_old_file_and_the_batch_goes_on(tmp_path: Path, folder: Path, ck: Path,
                                                           monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(crop("woman", 20, 20)).save(out / "a.png")
    old = (out / "a.png").read_bytes()
    calls: list[str] = []
    monkeypatch.setattr(Image.Image, "save", _partial_then_enospc(calls))
    assert main([str(folder), "-o", str(out), "--checkpoint", str(ck), "--overwrite"]) == 1
    monkeypatch.undo()
    cap = capsys.readouterr()
    assert len(calls) == 3 and calls[0] != str(out / "a.png")  # written to a temporary name first
    assert Path(calls[0]).parent == out
    assert (out / "a.png").read_bytes() == old  # the failed write left the existing file intact
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]  # no temporary file left
    errs = error_lines(cap.err)
    assert len(errs) == 2 and "a.png" in errs[0] and "No space left" in errs[0], cap.err
    assert "2 of 3" in errs[1] and "1 failed" in errs[1] and "Traceback" not in cap.err
    assert read(out / "b.png").size == (52, 56)


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from srops.models.upscale import main
sys.exit(main(sys.argv[2:]))
"""


def test_file_size_limit_real_write_failure(tmp_path: Path, ck: Path) -> None:
    """A real failing write (RLIMIT_FSIZE: the kernel refuses bytes past the limit, as a full disk does)."""
    src = tmp_path / "big.png"
    Image.fromarray(crop("butterfly", 120, 120)).save(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.png").write_bytes(b"old result, 26 bytes long")
    args = [str(src), "-o", str(out), "--checkpoint", str(ck), "--overwrite"]
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, "4096", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "big.png" in error_lines(proc.stderr)[0]
    assert (out / "big.png").read_bytes() == b"old result, 26 bytes long"
    assert [p.name for p in out.iterdir()] == ["big.png"]


def test_bad_image_is_one_error_line(tmp_path: Path, folder: Path, ck: Path, capsys) -> None:
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert main([str(folder), "-o", str(out), "--checkpoint", str(ck)]) == 1
    cap = capsys.readouterr()
    errs = error_lines(cap.err)
    assert len(errs) == 2 and "b.png" in errs[0] and "cannot read image" in errs[0]
    assert "2 of 3" in errs[1] and "1 failed" in errs[1]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_out_naming_a_file_is_refused(tmp_path: Path, folder: Path, ck: Path, capsys) -> None:
    target = tmp_path / "result.png"
    target.write_bytes(b"keep me")
    assert main([str(folder / "a.png"), "-o", str(target), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "Traceback" not in err
    assert str(target) in err and "folder" in err
    assert target.read_bytes() == b"keep me"


def test_unwritable_output_folder_is_refused_before_work(tmp_path: Path, folder: Path, ck: Path, monkeypatch,
                                                         capsys, make_read_only) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    make_read_only(out)  # a read-only file system: creating anything under `out` fails
    import srops.models.upscale as upscale

    ran = []
    monkeypatch.setattr(upscale, "upscale_file", lambda *a, **k: ran.append(a))
    assert main([str(folder), "-o", str(out), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and str(out) in err and "Read-only" in err
    assert ran == [] and list(out.iterdir()) == []
    # a folder that cannot be created (its parent is a file)
    (tmp_path / "file").write_text("x")
    assert main([str(folder), "-o", str(tmp_path / "file" / "sub"), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "file" in err and ran == []


AMMS = {"name": "amms", "scale": 2, "n_modules": 1, "n_am": 1, "n_feats": 8}


def test_image_smaller_than_the_network_accepts(tmp_path: Path, capsys) -> None:
    ck = write_checkpoint(tmp_path / "amms.pt", AMMS, iteration=1)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(crop("bird", 3, 5)).save(d / "tiny.png")
    Image.fromarray(crop("bird", 9, 8)).save(d / "ok.png")
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    errs = error_lines(err)
    assert len(errs) == 2 and "Traceback" not in err, err
    assert "tiny.png" in errs[0] and "5x3" in errs[0] and "4x4" in errs[0] and "amms" in errs[0]
    assert [p.name for p in out.iterdir()] == ["ok.png"]


def test_nan_output_is_refused(tmp_path: Path, folder: Path, capsys) -> None:
    import torch

    ck = write_checkpoint(tmp_path / "nan.pt", iteration=1)
    blob = torch.load(ck, weights_only=True)
    blob["model"] = {k: torch.full_like(v, float("nan")) for k, v in blob["model"].items()}
    torch.save(blob, ck)
    out = tmp_path / "out"
    assert main([str(folder / "a.png"), str(folder / "b.png"), "-o", str(out), "--checkpoint", str(ck)]) == 1
    errs = error_lines(capsys.readouterr().err)
    assert len(errs) == 3 and "a.png" in errs[0] and "nan.pt" in errs[0] and "NaN" in errs[0]
    assert not out.exists() or list(out.iterdir()) == []


@pytest.fixture()
def small_tmpfs(tmp_path: Path):
    """Mount a tmpfs (root only; skipped elsewhere): ``mount(options)`` → its folder, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], check=False)


def test_real_full_and_read_only_file_systems(tmp_path: Path, ck: Path, small_tmpfs, capsys) -> None:
    src = tmp_path / "photo.png"
    Image.fromarray(crop("butterfly", 96, 96)).save(src)
    full = small_tmpfs("size=64k")
    Image.fromarray(crop("bird", 40, 40)).save(full / "photo.png")  # an earlier result, ~5 KB
    old = (full / "photo.png").read_bytes()
    with open(full / "filler", "wb", buffering=0) as fh:  # fill the file system to the last block
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    assert main([str(src), "-o", str(full), "--checkpoint", str(ck), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "No space left" in error_lines(err)[0] and "Traceback" not in err
    assert (full / "photo.png").read_bytes() == old
    assert sorted(p.name for p in full.iterdir()) == ["filler", "photo.png"]
    ro = small_tmpfs("ro,size=64k")
    assert main([str(src), "-o", str(ro), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "Read-only" in err and str(ro) in err
